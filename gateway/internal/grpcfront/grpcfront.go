// Package grpcfront is the gateway's gRPC front: one address (127.0.0.1:50051 in the distributed mode) where every
// service of the contract answers, as it does in the embedded default, although each runs in its own process.
//
// A call to a contract service is forwarded unchanged to that service's backend: the request and response messages
// as raw bytes (never decoded), the caller's metadata (authorization included; dapr-* keys dropped, so a caller cannot
// aim a call at another app through a sidecar), the deadline, the response headers, the status with its details and
// the trailers, for all four kinds of call (unary, client, server and bidirectional streaming). The front itself
// serves grpc.reflection (v1 and v1alpha, from the descriptors compiled into gateway/gen) and grpc.health.v1, whose
// answers come from the backends.
package grpcfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// The contract's descriptors, for reflection.
	_ "todo-chatbot/gateway/gen/go/todo/audit/v1"
	_ "todo-chatbot/gateway/gen/go/todo/chat/v1"
	_ "todo-chatbot/gateway/gen/go/todo/notify/v1"
	_ "todo-chatbot/gateway/gen/go/todo/recurrence/v1"
	_ "todo-chatbot/gateway/gen/go/todo/reminder/v1"
	_ "todo-chatbot/gateway/gen/go/todo/task/v1"
)

// MaxMessageBytes bounds one message in either direction (as the REST side bounds a backend's answer).
const MaxMessageBytes = 16 << 20

// healthTimeout bounds one backend's health answer; watchInterval is how often a Watch asks again.
const (
	healthTimeout = 2 * time.Second
	watchInterval = time.Second
)

// Routes maps a gRPC service's full name (todo.task.v1.TaskService) to the connection of its backend.
type Routes map[string]grpc.ClientConnInterface

// New returns the gRPC server of the front; the caller serves it on a listener and stops it.
func New(routes Routes) (*grpc.Server, error) {
	descriptors, err := withoutJSONNames(protoregistry.GlobalFiles)
	if err != nil {
		return nil, fmt.Errorf("the compiled descriptors: %w", err)
	}
	front := &front{routes: routes}
	server := grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(front.forward),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
	)
	healthpb.RegisterHealthServer(server, &health{routes: routes})
	described := reflection.ServerOptions{Services: services{routes: routes}, DescriptorResolver: descriptors}
	reflectionv1.RegisterServerReflectionServer(server, reflection.NewServerV1(described))
	reflectionv1alpha.RegisterServerReflectionServer(server, reflection.NewServer(described))
	return server, nil
}

// withoutJSONNames copies a registry's files without their json_name entries, as the services' own reflection
// (protoc's Python code) describes them: grpcurl then prints proto field names (task_id, not taskId) through the
// front just as it does against a service, so what the README shows holds in both modes.
func withoutJSONNames(files *protoregistry.Files) (*protoregistry.Files, error) {
	set := &descriptorpb.FileDescriptorSet{}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		file := protodesc.ToFileDescriptorProto(fd)
		clearJSONNames(file.GetMessageType())
		for _, extension := range file.GetExtension() {
			extension.JsonName = nil
		}
		set.File = append(set.File, file)
		return true
	})
	return protodesc.NewFiles(set)
}

func clearJSONNames(messages []*descriptorpb.DescriptorProto) {
	for _, message := range messages {
		for _, field := range message.GetField() {
			field.JsonName = nil
		}
		for _, extension := range message.GetExtension() {
			extension.JsonName = nil
		}
		clearJSONNames(message.GetNestedType())
	}
}

// frame is one message as it travels: bytes the front never decodes.
type frame struct{ payload []byte }

// rawCodec passes frames through as they are and encodes everything else (health, reflection) as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.payload)}, nil
	}
	return protoCodec().Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		f.payload = data.Materialize() // a copy: grpc reuses data's buffers once this returns
		return nil
	}
	return protoCodec().Unmarshal(data, v)
}

func (rawCodec) Name() string { return protoenc.Name }

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(protoenc.Name) }

type front struct{ routes Routes }

// forward relays one call of any kind to the backend of its service.
func (f *front) forward(_ any, incoming grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(incoming)
	if !ok {
		return status.Error(codes.Internal, "no method name on the stream")
	}
	service, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	backend, ok := f.routes[service]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown service %s", service)
	}
	// The incoming context carries the caller's deadline and cancellation to the backend call.
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(incoming.Context(), forwardedMetadata(incoming.Context())))
	defer cancel()
	outgoing, err := backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method,
		grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes))
	if err != nil {
		return err
	}
	requests := make(chan error, 1)
	go func() { requests <- relayRequests(incoming, outgoing) }()
	responses := make(chan error, 1)
	go func() { responses <- relayResponses(outgoing, incoming) }()
	for {
		select {
		case err := <-requests:
			if !errors.Is(err, io.EOF) {
				return err // the caller went away (cancelled, deadline): cancel() ends the backend call
			}
			requests = nil // the caller sent everything; the responses may go on
		case err := <-responses:
			incoming.SetTrailer(outgoing.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // the backend's status, details included
		}
	}
}

// relayRequests copies the caller's messages to the backend; io.EOF once the caller has sent them all.
func relayRequests(from grpc.ServerStream, to grpc.ClientStream) error {
	for {
		message := &frame{}
		if err := from.RecvMsg(message); err != nil {
			if errors.Is(err, io.EOF) {
				_ = to.CloseSend()
			}
			return err
		}
		if err := to.SendMsg(message); err != nil {
			// The backend ended the call; its status arrives on the response side.
			return io.EOF
		}
	}
}

// relayResponses copies the backend's response headers and messages to the caller; io.EOF when the call ended OK.
func relayResponses(from grpc.ClientStream, to grpc.ServerStream) error {
	header, err := from.Header()
	if err == nil && len(header) > 0 {
		if err := to.SendHeader(header); err != nil {
			return err
		}
	}
	for {
		message := &frame{}
		if err := from.RecvMsg(message); err != nil {
			return err
		}
		if err := to.SendMsg(message); err != nil {
			return err
		}
	}
}

// forwardedMetadata is the caller's metadata minus what names a Dapr target (the gateway's backend table decides).
func forwardedMetadata(ctx context.Context) metadata.MD {
	incoming, _ := metadata.FromIncomingContext(ctx)
	out := incoming.Copy()
	for key := range maps.Keys(incoming) {
		if strings.HasPrefix(key, "dapr-") || strings.HasPrefix(key, ":") {
			delete(out, key)
		}
	}
	return out
}

// services is what reflection lists: the contract's services, health and reflection itself.
type services struct{ routes Routes }

func (s services) GetServiceInfo() map[string]grpc.ServiceInfo {
	info := map[string]grpc.ServiceInfo{
		healthpb.Health_ServiceDesc.ServiceName:                    {},
		reflectionv1.ServerReflection_ServiceDesc.ServiceName:      {},
		reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName: {},
	}
	for name := range s.routes {
		info[name] = grpc.ServiceInfo{}
	}
	return info
}

// health answers for the backends: a service's status is its backend's answer for it; the overall status ("") is
// SERVING only while every service's is.
type health struct {
	healthpb.UnimplementedHealthServer
	routes Routes
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.GetService() == "" {
		return &healthpb.HealthCheckResponse{Status: h.overall(ctx)}, nil
	}
	if _, ok := h.routes[req.GetService()]; !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %s", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: h.backend(ctx, req.GetService())}, nil
}

func (h *health) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	last := healthpb.HealthCheckResponse_UNKNOWN - 1
	for {
		reply, err := h.Check(stream.Context(), req)
		if status.Code(err) == codes.NotFound {
			reply, err = &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVICE_UNKNOWN}, nil
		}
		if err != nil {
			return err
		}
		if reply.GetStatus() != last {
			if err := stream.Send(reply); err != nil {
				return err
			}
			last = reply.GetStatus()
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-time.After(watchInterval):
		}
	}
}

func (h *health) backend(ctx context.Context, service string) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	reply, err := healthpb.NewHealthClient(h.routes[service]).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return reply.GetStatus()
}

func (h *health) overall(ctx context.Context) healthpb.HealthCheckResponse_ServingStatus {
	statuses := make(chan healthpb.HealthCheckResponse_ServingStatus, len(h.routes))
	for service := range h.routes {
		go func() { statuses <- h.backend(ctx, service) }()
	}
	overall := healthpb.HealthCheckResponse_SERVING
	for range h.routes {
		if <-statuses != healthpb.HealthCheckResponse_SERVING {
			overall = healthpb.HealthCheckResponse_NOT_SERVING
		}
	}
	return overall
}
