package grpcfront_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"todo-chatbot/gateway/internal/grpcfront"
)

const taskService = "todo.task.v1.TaskService"

// backend is a grpc.testing.TestService that records what reached it.
type backend struct {
	testpb.UnimplementedTestServiceServer
	mu          sync.Mutex
	metadata    []metadata.MD
	hadDeadline bool
	streamEnded chan struct{}
}

func (b *backend) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, deadline := ctx.Deadline()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.metadata = append(b.metadata, md)
	b.hadDeadline = deadline
}

func (b *backend) last() (metadata.MD, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.metadata[len(b.metadata)-1], b.hadDeadline
}

func (b *backend) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.record(ctx)
	switch string(req.GetPayload().GetBody()) {
	case "refuse":
		st, _ := status.New(codes.InvalidArgument, "title is empty").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "task.title", Description: "must not be empty"}},
		})
		return nil, st.Err()
	case "wait":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-header", "h1"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t1"))
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: append([]byte("echo:"), req.GetPayload().GetBody()...)}}, nil
}

func (b *backend) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	b.record(stream.Context())
	for i, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
		if i == len(req.GetResponseParameters())-1 && req.GetPayload().GetBody() != nil {
			// An endless stream: it ends only when the caller goes away.
			<-stream.Context().Done()
			close(b.streamEnded)
			return stream.Context().Err()
		}
	}
	return nil
}

func (b *backend) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	b.record(stream.Context())
	total := 0
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (b *backend) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	b.record(stream.Context())
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

type fixture struct {
	backend *backend
	health  *health.Server
	client  testpb.TestServiceClient
	conn    *grpc.ClientConn
}

func serve(t *testing.T, server *grpc.Server) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	return listener.Addr().String()
}

func dial(t *testing.T, address string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// start runs a backend serving grpc.testing.TestService and health, and a front routing to it both the test service
// and (for health and reflection) the task service's name.
func start(t *testing.T) fixture {
	t.Helper()
	b := &backend{streamEnded: make(chan struct{})}
	backendServer := grpc.NewServer()
	testpb.RegisterTestServiceServer(backendServer, b)
	healthServer := health.NewServer()
	healthpb.RegisterHealthServer(backendServer, healthServer)
	healthServer.SetServingStatus(taskService, healthpb.HealthCheckResponse_SERVING)
	healthServer.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	toBackend := dial(t, serve(t, backendServer))
	front, err := grpcfront.New(grpcfront.Routes{"grpc.testing.TestService": toBackend, taskService: toBackend})
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, serve(t, front))
	return fixture{backend: b, health: healthServer, client: testpb.NewTestServiceClient(conn), conn: conn}
}

func TestUnaryCallKeepsMetadataHeadersAndTrailers(t *testing.T) {
	f := start(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer abc", "dapr-app-id", "audit_svc")
	var header, trailer metadata.MD
	reply, err := f.client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("rent")}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(reply.GetPayload().GetBody()); got != "echo:rent" {
		t.Errorf("reply %q, want echo:rent", got)
	}
	seen, _ := f.backend.last()
	if got := seen.Get("authorization"); !slices.Equal(got, []string{"Bearer abc"}) {
		t.Errorf("backend saw authorization %v", got)
	}
	if got := seen.Get("dapr-app-id"); len(got) != 0 {
		t.Errorf("a caller's dapr-app-id reached the backend: %v", got)
	}
	if got := header.Get("x-header"); !slices.Equal(got, []string{"h1"}) {
		t.Errorf("header %v", header)
	}
	if got := trailer.Get("x-trailer"); !slices.Equal(got, []string{"t1"}) {
		t.Errorf("trailer %v", trailer)
	}
}

func TestErrorsKeepTheirCodeMessageAndDetails(t *testing.T) {
	f := start(t)
	_, err := f.client.UnaryCall(context.Background(), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("refuse")}})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || st.Message() != "title is empty" {
		t.Fatalf("got %v", err)
	}
	details := st.Details()
	if len(details) != 1 {
		t.Fatalf("details %v", details)
	}
	bad, ok := details[0].(*errdetails.BadRequest)
	if !ok || bad.GetFieldViolations()[0].GetField() != "task.title" {
		t.Errorf("details %v", details)
	}
}

func TestTheCallersDeadlineReachesTheBackend(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := f.client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("wait")}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	if _, hadDeadline := f.backend.last(); !hadDeadline {
		t.Error("the backend's call had no deadline")
	}
}

func TestServerStreamingDeliversEveryMessageInOrder(t *testing.T) {
	f := start(t)
	req := &testpb.StreamingOutputCallRequest{}
	for size := range 5 {
		req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(size + 1)})
	}
	stream, err := f.client.StreamingOutputCall(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		reply, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(reply.GetPayload().GetBody()))
	}
	if !slices.Equal(sizes, []int{1, 2, 3, 4, 5}) {
		t.Errorf("sizes %v", sizes)
	}
}

func TestACancelledStreamEndsAtTheBackend(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	req := &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 1}},
		Payload:            &testpb.Payload{Body: []byte("keep open")},
	}
	stream, err := f.client.StreamingOutputCall(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-f.backend.streamEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's stream still runs after the caller cancelled")
	}
}

func TestClientStreamingSendsEveryMessage(t *testing.T) {
	f := start(t)
	stream, err := f.client.StreamingInputCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, 20, 30} {
		if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetAggregatedPayloadSize() != 60 {
		t.Errorf("backend received %d bytes, want 60", reply.GetAggregatedPayloadSize())
	}
}

func TestBidirectionalStreamingAnswersEachMessage(t *testing.T) {
	f := start(t)
	stream, err := f.client.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, word := range []string{"one", "two", "three"} {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(word)}}); err != nil {
			t.Fatal(err)
		}
		reply, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(reply.GetPayload().GetBody()); got != word {
			t.Errorf("got %q, want %q", got, word)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend: %v, want EOF", err)
	}
}

func TestAnUnknownServiceIsUnimplemented(t *testing.T) {
	f := start(t)
	err := f.conn.Invoke(context.Background(), "/todo.nothing.v1.Nothing/Do", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("got %v, want UNIMPLEMENTED", err)
	}
}

func TestReflectionListsTheContractsServicesAndDescribesThem(t *testing.T) {
	f := start(t)
	stream, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		reply, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	listed := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, service := range listed.GetListServicesResponse().GetService() {
		names = append(names, service.GetName())
	}
	for _, want := range []string{taskService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not listed in %v", want, names)
		}
	}
	file := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: taskService}})
	if len(file.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("no descriptor for %s: %v", taskService, file)
	}
}

func TestHealthComesFromTheBackends(t *testing.T) {
	f := start(t)
	health := healthpb.NewHealthClient(f.conn)
	check := func(service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		reply, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		return reply.GetStatus(), err
	}
	if got, err := check(""); err != nil || got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("overall %v %v, want SERVING", got, err)
	}
	f.health.SetServingStatus(taskService, healthpb.HealthCheckResponse_NOT_SERVING)
	if got, err := check(taskService); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("task service %v %v, want NOT_SERVING", got, err)
	}
	if got, err := check(""); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("overall %v %v, want NOT_SERVING while a backend is not serving", got, err)
	}
	if _, err := check("todo.nothing.v1.Nothing"); status.Code(err) != codes.NotFound {
		t.Errorf("unknown service: %v, want NOT_FOUND", err)
	}
}
