// Package config reads the gateway's settings from the environment (TODO_GATEWAY_*), each of which a command-line
// flag may override, and fails fast with a message naming the bad one.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AppIDs maps every backend gRPC service to the app id that serves it (its Dapr app id, and the suffix of its
// per-service address setting).
var AppIDs = map[string]string{
	"todo.task.v1.TaskService":             "task_svc",
	"todo.reminder.v1.ReminderService":     "reminder_svc",
	"todo.recurrence.v1.RecurrenceService": "recurrence_svc",
	"todo.notify.v1.NotificationService":   "notify_svc",
	"todo.audit.v1.AuditService":           "audit_svc",
	"todo.chat.v1.ChatService":             "chat_svc",
}

// Config is everything the gateway is told.
type Config struct {
	// Listen is host:port of the HTTP server.
	Listen string
	// GRPCListen is host:port of the gRPC front (every call forwarded to its service's backend); empty: none.
	GRPCListen string
	// Backend is the one gRPC address of every service (the embedded default).
	Backend string
	// BackendFor holds per-service addresses by app id; they win over Backend.
	BackendFor map[string]string
	// DaprAddress, when set, receives every call, with dapr-app-id naming the service's app.
	DaprAddress string
	// DaprAPIToken is the sidecar's API token (DAPR_API_TOKEN, the Dapr injector's name; environment only, so it
	// never shows in a process listing): sent as dapr-api-token on every call to the sidecar, never elsewhere.
	DaprAPIToken string
	// StaticDir holds the web page; empty serves none.
	StaticDir string
	// DevKeyFile holds the token signing key of the embedded default; empty turns the dev token endpoint off.
	DevKeyFile string
	// CORSOrigins lists the origins other pages may call from; empty keeps CORS closed.
	CORSOrigins []string
	// MaxBodyBytes bounds a request body; a larger one is 413.
	MaxBodyBytes int64
	// Timeout bounds a unary call (streams stay open).
	Timeout time.Duration
	// BackendConnections is how many HTTP/2 connections carry the calls to one backend address.
	BackendConnections int
	// ShutdownGrace is how long unary calls may finish after SIGTERM.
	ShutdownGrace time.Duration
	// LogLevel is the lowest level logged; info includes the access log.
	LogLevel slog.Level
}

// Address is where the calls to one app go, and the app id to name when they go through a Dapr sidecar.
type Address struct {
	Target string
	// DaprAppID is empty unless the target is a Dapr sidecar.
	DaprAppID string
	// DaprAPIToken goes with every call as dapr-api-token; empty unless the target is a Dapr sidecar.
	DaprAPIToken string
}

// DaprAppID is the Dapr app id of the service of app id appID: a DNS label in Kubernetes, so "_" becomes "-"
// (task_svc -> task-svc), as the services' own Dapr runtime names its targets.
func DaprAppID(appID string) string { return strings.ReplaceAll(appID, "_", "-") }

// AddressOf returns where the service of app id appID is called.
func (c Config) AddressOf(appID string) Address {
	if c.DaprAddress != "" {
		return Address{Target: c.DaprAddress, DaprAppID: DaprAppID(appID), DaprAPIToken: c.DaprAPIToken}
	}
	if target, ok := c.BackendFor[appID]; ok {
		return Address{Target: target}
	}
	return Address{Target: c.Backend}
}

// DevSignIn tells whether the dev token endpoint exists.
func (c Config) DevSignIn() bool { return c.DevKeyFile != "" }

// setting is one TODO_GATEWAY_* variable and its flag.
type setting struct {
	env, flag, usage, fallback string
}

var settings = []setting{
	{"TODO_GATEWAY_LISTEN", "listen", "host:port the HTTP server listens on", "127.0.0.1:8080"},
	{"TODO_GATEWAY_GRPC_LISTEN", "grpc-listen", "host:port of the gRPC front, which forwards every call to its service's backend; empty = none", ""},
	{"TODO_GATEWAY_BACKEND", "backend", "gRPC address of every service (one process)", ""},
	{"TODO_GATEWAY_DAPR_ADDRESS", "dapr-address", "gRPC address of a Dapr sidecar; every call names its app with dapr-app-id", ""},
	{"TODO_GATEWAY_STATIC_DIR", "static-dir", "folder of the web page; empty serves none", ""},
	{"TODO_GATEWAY_DEV_KEY_FILE", "dev-key-file", "signing key file of the embedded default; enables POST /v1/dev/token", ""},
	{"TODO_GATEWAY_CORS_ORIGINS", "cors-origins", "comma-separated origins allowed to call from other pages; empty = CORS closed", ""},
	{"TODO_GATEWAY_MAX_BODY_BYTES", "max-body-bytes", "largest request body in bytes", "1048576"},
	{"TODO_GATEWAY_TIMEOUT", "timeout", "longest unary call (Go duration)", "30s"},
	{"TODO_GATEWAY_BACKEND_CONNECTIONS", "backend-connections", "HTTP/2 connections per backend address", "8"},
	{"TODO_GATEWAY_SHUTDOWN_GRACE", "shutdown-grace", "how long unary calls may finish after SIGTERM", "10s"},
	{"TODO_GATEWAY_LOG_LEVEL", "log-level", "debug, info (one access log line per request), warn or error", "info"},
}

// Load reads the settings from env (os.Environ format) and the flags in args (without the program name).
func Load(env []string, args []string) (Config, error) {
	environ := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			environ[k] = v
		}
	}
	fs := flag.NewFlagSet("todo-gateway", flag.ContinueOnError)
	values := map[string]*string{}
	for _, s := range settings {
		value := environ[s.env]
		if value == "" {
			value = s.fallback
		}
		values[s.env] = fs.String(s.flag, value, fmt.Sprintf("%s (env %s)", s.usage, s.env))
	}
	var backendFor backendFlags
	fs.Var(&backendFor, "backend-for", "app_id=host:port, a per-service address (repeatable; env TODO_GATEWAY_BACKEND_<APP_ID>)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	cfg := Config{
		Listen:      *values["TODO_GATEWAY_LISTEN"],
		GRPCListen:  *values["TODO_GATEWAY_GRPC_LISTEN"],
		Backend:     *values["TODO_GATEWAY_BACKEND"],
		DaprAddress: *values["TODO_GATEWAY_DAPR_ADDRESS"],
		StaticDir:   *values["TODO_GATEWAY_STATIC_DIR"],
		DevKeyFile:  *values["TODO_GATEWAY_DEV_KEY_FILE"],
		BackendFor:  map[string]string{},
		// Read whatever the backend: only AddressOf decides where it goes (a sidecar, and nowhere else).
		DaprAPIToken: environ["DAPR_API_TOKEN"],
	}
	for _, appID := range AppIDs {
		if target := environ["TODO_GATEWAY_BACKEND_"+strings.ToUpper(appID)]; target != "" {
			cfg.BackendFor[appID] = target
		}
	}
	for appID, target := range backendFor {
		cfg.BackendFor[appID] = target
	}
	for _, origin := range strings.Split(*values["TODO_GATEWAY_CORS_ORIGINS"], ",") {
		if origin = strings.TrimSpace(origin); origin != "" {
			cfg.CORSOrigins = append(cfg.CORSOrigins, origin)
		}
	}

	var err error
	if cfg.MaxBodyBytes, err = intSetting("TODO_GATEWAY_MAX_BODY_BYTES", *values["TODO_GATEWAY_MAX_BODY_BYTES"], 1024, 64<<20); err != nil {
		return Config{}, err
	}
	connections, err := intSetting("TODO_GATEWAY_BACKEND_CONNECTIONS", *values["TODO_GATEWAY_BACKEND_CONNECTIONS"], 1, 256)
	if err != nil {
		return Config{}, err
	}
	cfg.BackendConnections = int(connections)
	if cfg.Timeout, err = durationSetting("TODO_GATEWAY_TIMEOUT", *values["TODO_GATEWAY_TIMEOUT"]); err != nil {
		return Config{}, err
	}
	if cfg.ShutdownGrace, err = durationSetting("TODO_GATEWAY_SHUTDOWN_GRACE", *values["TODO_GATEWAY_SHUTDOWN_GRACE"]); err != nil {
		return Config{}, err
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*values["TODO_GATEWAY_LOG_LEVEL"])); err != nil {
		return Config{}, fmt.Errorf("TODO_GATEWAY_LOG_LEVEL must be debug, info, warn or error, got %q", *values["TODO_GATEWAY_LOG_LEVEL"])
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	if err := checkHostPort("TODO_GATEWAY_LISTEN", c.Listen); err != nil {
		return err
	}
	if c.GRPCListen != "" {
		if err := checkHostPort("TODO_GATEWAY_GRPC_LISTEN", c.GRPCListen); err != nil {
			return err
		}
		if c.GRPCListen == c.Listen {
			return errors.New("TODO_GATEWAY_GRPC_LISTEN must differ from TODO_GATEWAY_LISTEN")
		}
	}
	for _, r := range c.DaprAPIToken {
		// gRPC metadata values are printable ASCII; anything else would fail every call instead of the start.
		if r < 0x20 || r > 0x7e {
			return errors.New("DAPR_API_TOKEN must be printable ASCII")
		}
	}
	if c.DaprAddress != "" {
		if c.Backend != "" || len(c.BackendFor) > 0 {
			return errors.New("TODO_GATEWAY_DAPR_ADDRESS excludes TODO_GATEWAY_BACKEND and per-service addresses: set one or the other")
		}
		return checkHostPort("TODO_GATEWAY_DAPR_ADDRESS", c.DaprAddress)
	}
	if c.Backend != "" {
		if err := checkHostPort("TODO_GATEWAY_BACKEND", c.Backend); err != nil {
			return err
		}
	}
	for appID, target := range c.BackendFor {
		if !knownAppID(appID) {
			return fmt.Errorf("unknown app id %q in a per-service address (known: %s)", appID, strings.Join(sortedAppIDs(), ", "))
		}
		if err := checkHostPort("TODO_GATEWAY_BACKEND_"+strings.ToUpper(appID), target); err != nil {
			return err
		}
	}
	if c.Backend == "" {
		var missing []string
		for _, appID := range sortedAppIDs() {
			if _, ok := c.BackendFor[appID]; !ok {
				missing = append(missing, "TODO_GATEWAY_BACKEND_"+strings.ToUpper(appID))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no backend address: set TODO_GATEWAY_BACKEND, TODO_GATEWAY_DAPR_ADDRESS, or every one of %s", strings.Join(missing, ", "))
		}
	}
	for _, origin := range c.CORSOrigins {
		if origin != "*" && !strings.HasPrefix(origin, "http://") && !strings.HasPrefix(origin, "https://") {
			return fmt.Errorf("TODO_GATEWAY_CORS_ORIGINS: %q is not an origin (scheme://host[:port]) or *", origin)
		}
	}
	if c.StaticDir != "" {
		if info, err := os.Stat(c.StaticDir); err != nil || !info.IsDir() {
			return fmt.Errorf("TODO_GATEWAY_STATIC_DIR: %q is not a folder", c.StaticDir)
		}
	}
	return nil
}

func intSetting(name, raw string, lo, hi int64) (int64, error) {
	value, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s must be a whole number, got %q", name, raw)
	}
	if value < lo || value > hi {
		return 0, fmt.Errorf("%s must be between %d and %d, got %d", name, lo, hi, value)
	}
	return value, nil
}

func durationSetting(name, raw string) (time.Duration, error) {
	value, err := time.ParseDuration(strings.TrimSpace(raw))
	if err != nil || value <= 0 || value > time.Hour {
		return 0, fmt.Errorf("%s must be a duration between 0 and 1h such as 30s, got %q", name, raw)
	}
	return value, nil
}

func checkHostPort(name, value string) error {
	_, port, err := net.SplitHostPort(value)
	if err != nil || port == "" {
		return fmt.Errorf("%s must be host:port, got %q", name, value)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s: port of %q is not a number", name, value)
	}
	return nil
}

func knownAppID(appID string) bool { return slices.Contains(sortedAppIDs(), appID) }

func sortedAppIDs() []string { return slices.Sorted(maps.Values(AppIDs)) }

// backendFlags collects -backend-for app_id=host:port values.
type backendFlags map[string]string

func (b *backendFlags) String() string { return fmt.Sprint(map[string]string(*b)) }

func (b *backendFlags) Set(value string) error {
	appID, target, ok := strings.Cut(value, "=")
	if !ok {
		return fmt.Errorf("want app_id=host:port, got %q", value)
	}
	if *b == nil {
		*b = backendFlags{}
	}
	(*b)[strings.ToLower(strings.TrimSpace(appID))] = strings.TrimSpace(target)
	return nil
}
