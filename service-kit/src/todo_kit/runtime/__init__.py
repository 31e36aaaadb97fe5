"""The runtime port and its implementations (embedded; Dapr)."""
