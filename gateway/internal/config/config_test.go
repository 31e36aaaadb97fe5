package config_test

import (
	"strings"
	"testing"
	"time"

	"todo-chatbot/gateway/internal/config"
)

func load(t *testing.T, env []string, args ...string) config.Config {
	t.Helper()
	cfg, err := config.Load(env, args)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func TestDefaultsWithOneBackend(t *testing.T) {
	cfg := load(t, []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50051"})
	if cfg.Listen != "127.0.0.1:8080" || cfg.MaxBodyBytes != 1<<20 || cfg.Timeout != 30*time.Second {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.DevSignIn() || cfg.StaticDir != "" || len(cfg.CORSOrigins) != 0 {
		t.Fatalf("dev sign-in, the page and CORS must be off by default: %+v", cfg)
	}
	if got := cfg.AddressOf("task_svc"); got != (config.Address{Target: "127.0.0.1:50051"}) {
		t.Fatalf("task_svc goes to %+v", got)
	}
}

func TestPerServiceAddressWinsOverTheOneAddress(t *testing.T) {
	cfg := load(t, []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50051", "TODO_GATEWAY_BACKEND_CHAT_SVC=127.0.0.1:6000"})
	if got := cfg.AddressOf("chat_svc").Target; got != "127.0.0.1:6000" {
		t.Fatalf("chat_svc goes to %s", got)
	}
	if got := cfg.AddressOf("task_svc").Target; got != "127.0.0.1:50051" {
		t.Fatalf("task_svc goes to %s", got)
	}
}

func TestEveryServiceNeedsAnAddress(t *testing.T) {
	_, err := config.Load([]string{"TODO_GATEWAY_BACKEND_TASK_SVC=127.0.0.1:1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "TODO_GATEWAY_BACKEND_CHAT_SVC") {
		t.Fatalf("want an error naming the missing addresses, got %v", err)
	}
}

func TestDaprSidecarNamesTheAppOfEachService(t *testing.T) {
	cfg := load(t, []string{"TODO_GATEWAY_DAPR_ADDRESS=127.0.0.1:50001"})
	if got := cfg.AddressOf("notify_svc"); got != (config.Address{Target: "127.0.0.1:50001", DaprAppID: "notify-svc"}) {
		t.Fatalf("notify_svc goes to %+v", got)
	}
	if _, err := config.Load([]string{"TODO_GATEWAY_DAPR_ADDRESS=127.0.0.1:50001", "TODO_GATEWAY_BACKEND=127.0.0.1:2"}, nil); err == nil {
		t.Fatal("a sidecar and direct addresses together must be refused")
	}
}

func TestTheSidecarsAPITokenGoesOnlyToTheSidecar(t *testing.T) {
	cfg := load(t, []string{"TODO_GATEWAY_DAPR_ADDRESS=127.0.0.1:50001", "DAPR_API_TOKEN=s3cret"})
	if got := cfg.AddressOf("task_svc"); got != (config.Address{Target: "127.0.0.1:50001", DaprAppID: "task-svc", DaprAPIToken: "s3cret"}) {
		t.Fatalf("task_svc goes to %+v", got)
	}
	direct := load(t, []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50051", "TODO_GATEWAY_BACKEND_CHAT_SVC=127.0.0.1:6000", "DAPR_API_TOKEN=s3cret"})
	for _, appID := range []string{"task_svc", "chat_svc"} {
		if got := direct.AddressOf(appID); got.DaprAPIToken != "" || got.DaprAppID != "" {
			t.Fatalf("%s without a sidecar goes to %+v", appID, got)
		}
	}
	_, err := config.Load([]string{"TODO_GATEWAY_DAPR_ADDRESS=127.0.0.1:50001", "DAPR_API_TOKEN=bad\ntoken"}, nil)
	if err == nil || !strings.Contains(err.Error(), "DAPR_API_TOKEN") {
		t.Fatalf("a token that cannot travel as metadata must be refused naming DAPR_API_TOKEN, got %v", err)
	}
}

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	cfg := load(t, []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50051", "TODO_GATEWAY_LISTEN=127.0.0.1:1"},
		"-listen", "127.0.0.1:9090", "-backend-for", "audit_svc=127.0.0.1:7000", "-cors-origins", "https://a.test, https://b.test")
	if cfg.Listen != "127.0.0.1:9090" || cfg.AddressOf("audit_svc").Target != "127.0.0.1:7000" {
		t.Fatalf("flags not applied: %+v", cfg)
	}
	if len(cfg.CORSOrigins) != 2 || cfg.CORSOrigins[1] != "https://b.test" {
		t.Fatalf("origins: %v", cfg.CORSOrigins)
	}
}

func TestBadSettingsAreNamed(t *testing.T) {
	base := []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50051"}
	cases := map[string]string{
		"TODO_GATEWAY_MAX_BODY_BYTES=lots":       "TODO_GATEWAY_MAX_BODY_BYTES",
		"TODO_GATEWAY_MAX_BODY_BYTES=10":         "TODO_GATEWAY_MAX_BODY_BYTES",
		"TODO_GATEWAY_TIMEOUT=forever":           "TODO_GATEWAY_TIMEOUT",
		"TODO_GATEWAY_TIMEOUT=-1s":               "TODO_GATEWAY_TIMEOUT",
		"TODO_GATEWAY_LISTEN=8080":               "TODO_GATEWAY_LISTEN",
		"TODO_GATEWAY_CORS_ORIGINS=evil.test":    "TODO_GATEWAY_CORS_ORIGINS",
		"TODO_GATEWAY_STATIC_DIR=/no/such/place": "TODO_GATEWAY_STATIC_DIR",
		"TODO_GATEWAY_LOG_LEVEL=loud":            "TODO_GATEWAY_LOG_LEVEL",
		"TODO_GATEWAY_BACKEND_CONNECTIONS=0":     "TODO_GATEWAY_BACKEND_CONNECTIONS",
	}
	for setting, name := range cases {
		_, err := config.Load(append(base, setting), nil)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: want an error naming %s, got %v", setting, name, err)
		}
	}
	if _, err := config.Load(base, []string{"-backend-for", "billing_svc=127.0.0.1:1"}); err == nil {
		t.Error("an unknown app id must be refused")
	}
}

func TestTheGRPCFrontIsOffUnlessAnAddressIsGiven(t *testing.T) {
	if cfg := load(t, []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50061"}); cfg.GRPCListen != "" {
		t.Fatalf("gRPC front on %q by default", cfg.GRPCListen)
	}
	cfg := load(t, []string{"TODO_GATEWAY_BACKEND=127.0.0.1:50061", "TODO_GATEWAY_GRPC_LISTEN=127.0.0.1:50051"})
	if cfg.GRPCListen != "127.0.0.1:50051" {
		t.Fatalf("gRPC front on %q", cfg.GRPCListen)
	}
	for _, bad := range []string{"TODO_GATEWAY_GRPC_LISTEN=50051", "TODO_GATEWAY_GRPC_LISTEN=127.0.0.1:8080"} {
		_, err := config.Load([]string{"TODO_GATEWAY_BACKEND=127.0.0.1:50061", bad}, nil)
		if err == nil || !strings.Contains(err.Error(), "TODO_GATEWAY_GRPC_LISTEN") {
			t.Errorf("%s: got %v, want an error naming TODO_GATEWAY_GRPC_LISTEN", bad, err)
		}
	}
}
