"""pyflanneld's command line: flanneld's flag names and defaults, FLANNELD_* environment,
Go-style booleans, clear errors for values out of range."""

from __future__ import annotations

import pytest

from overlay.main import options_of, parse_args


def test_flanneld_defaults() -> None:
    args = parse_args([], environ={})
    assert args.etcd_endpoints == "http://127.0.0.1:4001,http://127.0.0.1:2379"
    assert args.etcd_prefix == "/coreos.com/network"
    assert args.subnet_file == "/run/flannel/subnet.env"
    assert args.subnet_lease_renew_margin == 60
    assert args.subnet_lease_ttl == 86400
    assert args.ip_masq is False and args.iptables_forward_rules is True
    assert args.iptables_resync == 5
    assert args.healthz_port == 0 and args.healthz_ip == "0.0.0.0"
    opts = options_of(args)
    assert opts.renew_margin == 3600.0 and opts.random_fully and not opts.ip_masq


def test_go_style_booleans_and_repeated_iface() -> None:
    args = parse_args(
        [
            "--ip-masq",
            "--iptables-forward-rules=false",
            "--iface",
            "eth0",
            "--iface",
            "10.0.0.1",
            "-v",
            "2",
        ],
        environ={},
    )
    assert args.ip_masq is True and args.iptables_forward_rules is False
    assert args.iface == ["eth0", "10.0.0.1"] and args.verbosity == 2


def test_environment_sets_defaults_and_flags_win() -> None:
    env = {
        "FLANNELD_ETCD_ENDPOINTS": "http://192.0.2.1:2379",
        "FLANNELD_IP_MASQ": "true",
        "FLANNELD_IFACE": "eth1,eth2",
        "FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "30",
    }
    args = parse_args([], environ=env)
    assert args.etcd_endpoints == "http://192.0.2.1:2379"
    assert args.ip_masq is True and args.iface == ["eth1", "eth2"]
    assert args.subnet_lease_renew_margin == 30
    assert parse_args(["--ip-masq=false"], environ=env).ip_masq is False


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--subnet-lease-renew-margin", "0"], {}, "--subnet-lease-renew-margin 0 is out of range"),
        (["--subnet-lease-renew-margin", "1440"], {}, "out of range 1..1439"),
        (["--iptables-resync", "0"], {}, "--iptables-resync 0"),
        (["--healthz-port", "70000"], {}, "--healthz-port 70000"),
        (["--kube-subnet-mgr"], {}, "--kube-subnet-mgr is not supported"),
        (["--ip-masq=maybe"], {}, "is not a boolean"),
        (["--etcd-username", "u"], {}, "go together"),
        ([], {"FLANNELD_IP_MASQ": "perhaps"}, "FLANNELD_IP_MASQ"),
        ([], {"FLANNELD_IPTABLES_RESYNC": "soon"}, "FLANNELD_IPTABLES_RESYNC"),
    ],
)
def test_bad_flags_are_named(
    argv: list[str], env: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv, environ=env)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err
