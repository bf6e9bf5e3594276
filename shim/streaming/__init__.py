"""The CRI streaming server: Exec, Attach and PortForward (CRI-CONTAINERS.md §4).

The RPCs (`exec`, `attach`, `port_forward`) only validate and return a one-time URL; the
client then connects to `server.StreamingServer`, which upgrades the connection to SPDY/3.1
(`spdy_session` over the `spdy` framer) or WebSocket (`ws_remotecommand`, `ws_port_forward`,
`ws_tunnel`) and bridges it to Docker (`docker_stream`) or to a port in the pod
(`netns_dial`). See `server` for the concurrency model and its single hand-off with gRPC."""
