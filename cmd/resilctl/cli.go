package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/correlation"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/tlsconfig"
)

// Defaults of the global flags.
const (
	defaultAddr    = "localhost:50051"
	defaultTimeout = 5 * time.Second
	addrEnv        = "RESILIENCE_ADDR"
	tokenEnv       = "RESILIENCE_TOKEN"
)

// Output formats (--output).
const (
	outputTable = "table"
	outputJSON  = "json"
)

// Main is the resilctl program: it parses the global flags and hands the
// rest of the command line to the command group named first. Set its
// fields (NewMain uses the process's) before Run; a Main runs one command
// line at a time and is not safe for concurrent use.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (RESILIENCE_ADDR); nil means no
	// environment.
	Getenv func(string) string
}

// NewMain returns a Main on the process's standard streams and environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// globals are the settings shared by every command (the global flags), the
// streams, and the connection, opened on first use. Not safe for concurrent
// use.
type globals struct {
	addr          string
	timeout       time.Duration
	output        string
	correlationID string
	// token is sent as "authorization: Bearer <token>" when set.
	token string
	// TLS: off unless tls or one of the files is set.
	tls                                   bool
	tlsCA, tlsCert, tlsKey, tlsServerName string

	stdin          io.Reader
	stdout, stderr io.Writer

	conn *grpc.ClientConn // nil until dial
}

// json reports whether the output is JSON.
func (g *globals) json() bool { return g.output == outputJSON }

// dial opens the connection (lazily: grpc.NewClient connects on the first
// RPC) once.
func (g *globals) dial() (*grpc.ClientConn, error) {
	if g.conn != nil {
		return g.conn, nil
	}
	creds := insecure.NewCredentials()
	if g.tls || g.tlsCA != "" || g.tlsCert != "" {
		tcfg, err := tlsconfig.Client(g.tlsCA, g.tlsCert, g.tlsKey, g.tlsServerName, false)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tcfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if g.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(client.BearerToken(g.token)))
	}
	conn, err := grpc.NewClient(g.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--addr %q: %w", g.addr, err)
	}
	g.conn = conn
	return conn, nil
}

func (g *globals) close() {
	if g.conn != nil {
		_ = g.conn.Close()
	}
}

func (g *globals) resilience() (resiliencev1.ResilienceServiceClient, error) {
	conn, err := g.dial()
	if err != nil {
		return nil, err
	}
	return resiliencev1.NewResilienceServiceClient(conn), nil
}

func (g *globals) cache() (resiliencev1.CacheServiceClient, error) {
	conn, err := g.dial()
	if err != nil {
		return nil, err
	}
	return resiliencev1.NewCacheServiceClient(conn), nil
}

// outgoing adds the correlation id, if any, to ctx's outgoing metadata.
func (g *globals) outgoing(ctx context.Context) context.Context {
	if g.correlationID == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, correlation.Header, g.correlationID)
}

// rpcContext is the context of one unary RPC: --timeout and the
// correlation id.
func (g *globals) rpcContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(g.outgoing(ctx), g.timeout)
}

// warnDegraded tells a person (table output only; JSON has the field) that
// an answer came without the shared store.
func (g *globals) warnDegraded(degraded bool) {
	if degraded && !g.json() {
		fmt.Fprintln(g.stderr, "resilctl: warning: degraded answer: the shared store was unreachable, this is one replica's local view")
	}
}

// Run runs the command line args (without the program name). It returns
// flag.ErrHelp after printing help, a *usageError for a bad command line, the
// RPC's error (a gRPC status) when one fails, or nil. ExitCode maps them.
func (m *Main) Run(ctx context.Context, args []string) error {
	g := &globals{stdin: m.Stdin, stdout: m.Stdout, stderr: m.Stderr}
	if g.stdin == nil {
		g.stdin = strings.NewReader("")
	}
	addr, token := defaultAddr, ""
	if m.Getenv != nil {
		if v := m.Getenv(addrEnv); v != "" {
			addr = v
		}
		token = m.Getenv(tokenEnv)
	}
	fs := newFlagSet("resilctl")
	fs.StringVar(&g.addr, "addr", addr, "the server's `host:port` (env "+addrEnv+")")
	fs.DurationVar(&g.timeout, "timeout", defaultTimeout, "deadline of each RPC (not for breakers watch)")
	fs.StringVar(&g.output, "output", outputTable, "output `format`: table or json")
	fs.StringVar(&g.correlationID, "correlation-id", "", "sent as x-correlation-id with every RPC, to find the calls in the server's logs")
	fs.StringVar(&g.token, "token", token, "bearer `token` of a principal of the server's auth section; prefer the env "+tokenEnv+", which other users cannot read in the process list")
	fs.BoolVar(&g.tls, "tls", false, "connect with TLS, verifying the server against the system's CAs")
	fs.StringVar(&g.tlsCA, "tls-ca", "", "PEM `file` of the CAs that sign the server's certificate (implies --tls)")
	fs.StringVar(&g.tlsCert, "tls-cert", "", "PEM client certificate `file`, for servers that require one (implies --tls)")
	fs.StringVar(&g.tlsKey, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.StringVar(&g.tlsServerName, "tls-server-name", "", "the `name` to verify in the server's certificate (default: the host of --addr)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printRootHelp(g.stdout, fs)
			return err
		}
		return &usageError{cmd: rootCommand, msg: err.Error()}
	}
	switch g.output {
	case outputTable, outputJSON:
	default:
		return &usageError{cmd: rootCommand, msg: fmt.Sprintf("--output %q: want table or json", g.output)}
	}
	if (g.tlsCert == "") != (g.tlsKey == "") {
		return &usageError{cmd: rootCommand, msg: "--tls-cert and --tls-key go together"}
	}
	if g.timeout <= 0 {
		return &usageError{cmd: rootCommand, msg: fmt.Sprintf("--timeout %s: must be > 0", g.timeout)}
	}
	if g.correlationID != "" && !correlation.Valid(g.correlationID) {
		return &usageError{cmd: rootCommand, msg: fmt.Sprintf("--correlation-id %q: at most %d printable ASCII characters", g.correlationID, correlation.MaxLen)}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return &usageError{cmd: rootCommand, msg: "missing command"}
	}
	if rest[0] == "help" { // help [COMMAND...] is COMMAND... --help
		if len(rest) == 1 {
			printRootHelp(g.stdout, fs)
			return flag.ErrHelp
		}
		rest = append(rest[1:len(rest):len(rest)], "--help")
	}
	defer g.close()
	switch rest[0] {
	case "breakers":
		return (&BreakersCommand{g: g}).Run(ctx, rest[1:])
	case "limits":
		return (&LimitsCommand{g: g}).Run(ctx, rest[1:])
	case "cache":
		return (&CacheCommand{g: g}).Run(ctx, rest[1:])
	default:
		return &usageError{cmd: rootCommand, msg: fmt.Sprintf("unknown command %q", rest[0])}
	}
}

// ExitCode prints err (if any) to Stderr as the user should see it and
// returns the process exit status: 0 for nil and flag.ErrHelp, 2 for a
// usage error, 1 for anything else (a failed RPC: "resilctl: CODE: message").
func (m *Main) ExitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(m.Stderr, "resilctl: %s\n", ue.Error())
		fmt.Fprintf(m.Stderr, "usage: %s\n", ue.cmd.synopsis())
		fmt.Fprintf(m.Stderr, "Run '%s --help' for details.\n", strings.TrimSpace("resilctl "+ue.cmd.name))
		return 2
	default:
		fmt.Fprintf(m.Stderr, "resilctl: %s\n", errorText(err))
		return 1
	}
}

// errorText renders an RPC error as "CODE: message" (the canonical code
// name, as grpcurl and the proto docs spell it); other errors as they are.
func errorText(err error) string {
	if st, ok := status.FromError(err); ok {
		return codeName(st.Code()) + ": " + st.Message()
	}
	return err.Error()
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// codeName is the canonical name of a gRPC code (NOT_FOUND).
func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

// call makes one RPC on the client newClient gives, under the per-RPC
// timeout and with the correlation id.
func call[C, R any](ctx context.Context, g *globals, newClient func() (C, error), rpc func(context.Context, C) (R, error)) (R, error) {
	var zero R
	client, err := newClient()
	if err != nil {
		return zero, err
	}
	rctx, cancel := g.rpcContext(ctx)
	defer cancel()
	return rpc(rctx, client)
}

// printAnswer writes resp as JSON, or as the aligned rows for people (with
// a warning on stderr when the answer was degraded).
func (g *globals) printAnswer(resp proto.Message, degraded bool, rows []kv) error {
	if g.json() {
		return writeJSON(g.stdout, resp)
	}
	g.warnDegraded(degraded)
	return writeKV(g.stdout, rows)
}
