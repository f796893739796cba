// Command xds-peer is a test ADS server (state of the world) built on envoyproxy/go-control-plane:
// an xDS implementation written by other people, so that weft-proxy's client is checked against
// more than weft-xds's own server.
//
// It serves ADS on -ads from go-control-plane's snapshot cache (one snapshot for every node) and
// takes orders on a small HTTP control endpoint (-control):
//
//	GET  /healthz                          200 "ok" once serving
//	GET  /stats                            what the clients sent, per type URL (JSON, see stats)
//	POST /snapshot?dir=D&version=V         load D/{listeners,routes,clusters,endpoints}.json as
//	                                       snapshot version V (a missing file is an empty set)
//	POST /mode?resend_nacked=true|false    after a NACK, resend the rejected content at once
//	                                       (go-control-plane's own behaviour) or hold it until
//	                                       the next snapshot (the default)
//	POST /fault/mismatch?type=T[&as=U]     the next response of type T gets the Any type URL U
//	                                       (default: the Cluster type URL) on its first resource
//
// Each JSON file holds an array of Envoy resources of its type in protojson form, each with its
// "@type" (e.g. "type.googleapis.com/envoy.config.listener.v3.Listener").
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// The message types that resources may carry, registered for protojson's "@type".
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// files maps each snapshot file to the type of the resources it holds.
var files = []struct {
	name string
	typ  resource.Type
}{
	{"listeners.json", resource.ListenerType},
	{"routes.json", resource.RouteType},
	{"clusters.json", resource.ClusterType},
	{"endpoints.json", resource.EndpointType},
}

// node is the one snapshot key: every connecting node gets the same snapshot.
const node = "xds-peer"

type allNodes struct{}

func (allNodes) ID(*core.Node) string { return node }

func main() {
	adsAddr := flag.String("ads", "127.0.0.1:15010", "ADS (gRPC) listen address")
	controlAddr := flag.String("control", "127.0.0.1:15014", "control HTTP listen address")
	dir := flag.String("dir", "", "initial snapshot directory (optional)")
	version := flag.String("version", "1", "version of the initial snapshot")
	verbose := flag.Bool("v", false, "log go-control-plane's debug messages")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rec := newRecorder()
	snapshots := cache.NewSnapshotCache(false, allNodes{}, logger{*verbose})
	peer := &peerCache{SnapshotCache: snapshots, rec: rec}
	if *dir != "" {
		if err := peer.load(ctx, *dir, *version); err != nil {
			log.Fatalf("initial snapshot: %v", err)
		}
	}

	xds := server.NewServer(ctx, peer, rec.callbacks(), sotw.WithLogger(logger{*verbose}))
	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, faultyADS{Server: xds, rec: rec})
	adsListener, err := net.Listen("tcp", *adsAddr)
	if err != nil {
		log.Fatalf("ADS listen: %v", err)
	}
	controlListener, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		log.Fatalf("control listen: %v", err)
	}
	control := &http.Server{Handler: controlMux(ctx, peer, rec), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := grpcServer.Serve(adsListener); err != nil {
			log.Fatalf("ADS serve: %v", err)
		}
	}()
	go func() {
		if err := control.Serve(controlListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("control serve: %v", err)
		}
	}()
	log.Printf("xds-peer serving ADS on %s, control on %s", adsListener.Addr(), controlListener.Addr())
	<-ctx.Done()
	grpcServer.Stop()
	_ = control.Close()
}

// peerCache is go-control-plane's snapshot cache, with one change unless resend mode is on: a
// NACK is answered like an ACK of the rejected version, so the rejected content is not sent
// again until a new snapshot (the snapshot cache alone resends it at once, since the NACK
// carries the client's previous version).
type peerCache struct {
	cache.SnapshotCache
	rec *recorder
}

func (c *peerCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	if req.GetErrorDetail() != nil && !c.rec.resendNacked() {
		if sent := c.rec.sentVersion(req.GetTypeUrl(), req.GetResponseNonce()); sent != "" {
			held := proto.Clone(req).(*discovery.DiscoveryRequest)
			held.VersionInfo = sent
			req = held
		}
	}
	return c.SnapshotCache.CreateWatch(req, sub, out)
}

// load reads a snapshot directory and makes it the snapshot of every node.
func (c *peerCache) load(ctx context.Context, dir, version string) error {
	if version == "" {
		return errors.New("the version is empty")
	}
	if info, err := os.Stat(dir); err != nil {
		return err
	} else if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	sets := make(map[resource.Type][]types.Resource, len(files))
	for _, f := range files {
		set, err := readSet(filepath.Join(dir, f.name), f.typ)
		if err != nil {
			return err
		}
		sets[f.typ] = set
	}
	snapshot, err := cache.NewSnapshot(version, sets)
	if err != nil {
		return err
	}
	// Not checked for consistency on purpose: tests serve route sets that omit a name a
	// listener refers to.
	if err := c.SetSnapshot(ctx, node, snapshot); err != nil {
		return err
	}
	log.Printf("snapshot version %s from %s", version, dir)
	return nil
}

// readSet reads one file: a JSON array of resources of type typ. A missing file is an empty set.
func readSet(path string, typ resource.Type) ([]types.Resource, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: not a JSON array: %w", path, err)
	}
	set := make([]types.Resource, 0, len(raw))
	for i, item := range raw {
		var packed anypb.Any
		if err := protojson.Unmarshal(item, &packed); err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", path, i, err)
		}
		if packed.GetTypeUrl() != typ {
			return nil, fmt.Errorf("%s: resource %d: @type %q, want %q", path, i, packed.GetTypeUrl(), typ)
		}
		message, err := packed.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", path, i, err)
		}
		set = append(set, message)
	}
	return set, nil
}

// faultyADS serves ADS through go-control-plane, rewriting responses when a fault is armed.
type faultyADS struct {
	server.Server
	rec *recorder
}

func (a faultyADS) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.Server.StreamAggregatedResources(faultyStream{stream, a.rec})
}

type faultyStream struct {
	discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	rec *recorder
}

func (s faultyStream) Send(resp *discovery.DiscoveryResponse) error {
	if as := s.rec.takeMismatch(resp.GetTypeUrl()); as != "" && len(resp.GetResources()) > 0 {
		resp = proto.Clone(resp).(*discovery.DiscoveryResponse)
		log.Printf("fault: %s response %s: resource 0 sent as %s", resp.GetTypeUrl(), resp.GetNonce(), as)
		resp.Resources[0].TypeUrl = as
	}
	return s.AggregatedDiscoveryService_StreamAggregatedResourcesServer.Send(resp)
}

// nack is one NACK a client sent.
type nack struct {
	// AtMs is when it arrived, in milliseconds since the server started.
	AtMs float64 `json:"at_ms"`
	// Version is the request's version_info: the last version the client accepted.
	Version string `json:"version"`
	Nonce   string `json:"nonce"`
	Error   string `json:"error"`
}

// typeStats is what happened for one type URL, over every stream.
type typeStats struct {
	Requests int `json:"requests"`
	// Acks counts requests that answer a response without an error (including
	// subscription changes sent with the last nonce).
	Acks         int    `json:"acks"`
	AckedVersion string `json:"acked_version"`
	LastNack     *nack  `json:"last_nack"`
	// Nacks lists the most recent NACKs, oldest first (at most maxNacks).
	Nacks     []nack `json:"nacks"`
	NackCount int    `json:"nack_count"`
	// ResourceNames are the names of the latest request.
	ResourceNames []string `json:"resource_names"`
	Responses     int      `json:"responses"`
	SentVersion   string   `json:"sent_version"`
	SentNonce     string   `json:"sent_nonce"`
	// SentResources are the names of the resources in the latest response.
	SentResources []string `json:"sent_resources"`
}

const maxNacks = 1000

type stats struct {
	NowMs         float64               `json:"now_ms"`
	StreamsOpened int                   `json:"streams_opened"`
	StreamsOpen   int                   `json:"streams_open"`
	ResendNacked  bool                  `json:"resend_nacked"`
	Types         map[string]*typeStats `json:"types"`
}

// recorder keeps the stats and the modes; go-control-plane calls it from every stream.
type recorder struct {
	start time.Time

	mu       sync.Mutex
	stats    stats
	resend   bool
	mismatch map[string]string
}

func newRecorder() *recorder {
	return &recorder{
		start:    time.Now(),
		stats:    stats{Types: map[string]*typeStats{}},
		mismatch: map[string]string{},
	}
}

func (r *recorder) typ(typeURL string) *typeStats {
	t, ok := r.stats.Types[typeURL]
	if !ok {
		t = &typeStats{ResourceNames: []string{}, Nacks: []nack{}, SentResources: []string{}}
		r.stats.Types[typeURL] = t
	}
	return t
}

func (r *recorder) sinceStart() float64 {
	return float64(time.Since(r.start).Microseconds()) / 1000
}

func (r *recorder) callbacks() server.Callbacks {
	return server.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.stats.StreamsOpened++
			r.stats.StreamsOpen++
			log.Printf("stream %d opened", id)
			return nil
		},
		StreamClosedFunc: func(id int64, _ *core.Node) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.stats.StreamsOpen--
			log.Printf("stream %d closed", id)
		},
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			t := r.typ(req.GetTypeUrl())
			t.Requests++
			t.ResourceNames = append([]string{}, req.GetResourceNames()...)
			switch {
			case req.GetErrorDetail() != nil:
				n := nack{
					AtMs:    r.sinceStart(),
					Version: req.GetVersionInfo(),
					Nonce:   req.GetResponseNonce(),
					Error:   req.GetErrorDetail().GetMessage(),
				}
				t.LastNack = &n
				t.NackCount++
				t.Nacks = append(t.Nacks, n)
				if len(t.Nacks) > maxNacks {
					t.Nacks = t.Nacks[len(t.Nacks)-maxNacks:]
				}
				log.Printf("stream %d: NACK %s nonce %s: %s", id, req.GetTypeUrl(), n.Nonce, n.Error)
			case req.GetResponseNonce() != "":
				t.Acks++
				t.AckedVersion = req.GetVersionInfo()
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			names := make([]string, 0, len(resp.GetResources()))
			for _, packed := range resp.GetResources() {
				if message, err := packed.UnmarshalNew(); err == nil {
					names = append(names, cache.GetResourceName(message))
				}
			}
			sort.Strings(names)
			r.mu.Lock()
			defer r.mu.Unlock()
			t := r.typ(resp.GetTypeUrl())
			t.Responses++
			t.SentVersion = resp.GetVersionInfo()
			t.SentNonce = resp.GetNonce()
			t.SentResources = names
			log.Printf("stream %d: sent %s version %s nonce %s %v", id, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), names)
		},
	}
}

// sentVersion is the version of the response with this nonce, if it is the latest of its type.
func (r *recorder) sentVersion(typeURL, nonce string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.stats.Types[typeURL]; ok && t.SentNonce == nonce {
		return t.SentVersion
	}
	return ""
}

func (r *recorder) resendNacked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resend
}

func (r *recorder) takeMismatch(typeURL string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	as := r.mismatch[typeURL]
	delete(r.mismatch, typeURL)
	return as
}

func (r *recorder) snapshotJSON() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.NowMs = r.sinceStart()
	r.stats.ResendNacked = r.resend
	return json.MarshalIndent(&r.stats, "", "  ")
}

func controlMux(ctx context.Context, peer *peerCache, rec *recorder) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		body, err := rec.snapshotJSON()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("POST /snapshot", func(w http.ResponseWriter, req *http.Request) {
		query := req.URL.Query()
		if err := peer.load(ctx, query.Get("dir"), query.Get("version")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /mode", func(w http.ResponseWriter, req *http.Request) {
		resend, err := strconv.ParseBool(req.URL.Query().Get("resend_nacked"))
		if err != nil {
			http.Error(w, "resend_nacked: "+err.Error(), http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.resend = resend
		rec.mu.Unlock()
		log.Printf("mode: resend_nacked=%t", resend)
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /fault/mismatch", func(w http.ResponseWriter, req *http.Request) {
		query := req.URL.Query()
		typeURL := query.Get("type")
		if typeURL == "" {
			http.Error(w, "type is required", http.StatusBadRequest)
			return
		}
		as := query.Get("as")
		if as == "" {
			as = resource.ClusterType
		}
		rec.mu.Lock()
		rec.mismatch[typeURL] = as
		rec.mu.Unlock()
		log.Printf("fault armed: next %s response carries %s", typeURL, as)
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// logger sends go-control-plane's messages to the standard logger.
type logger struct{ verbose bool }

func (l logger) Debugf(format string, args ...any) {
	if l.verbose {
		log.Printf("debug: "+format, args...)
	}
}
func (l logger) Infof(format string, args ...any)  { log.Printf("info: "+format, args...) }
func (l logger) Warnf(format string, args ...any)  { log.Printf("warn: "+format, args...) }
func (l logger) Errorf(format string, args ...any) { log.Printf("error: "+format, args...) }
