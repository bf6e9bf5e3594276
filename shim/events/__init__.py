"""The container events stream (GetContainerEvents) kubelet's Evented PLEG follows."""
