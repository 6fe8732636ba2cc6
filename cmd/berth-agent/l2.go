package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/berthnet/berth/l2announce"
	l2kube "github.com/berthnet/berth/l2announce/kube"
)

// l2Options are the layer-2 announcer's flags.
type l2Options struct {
	enabled        bool
	keyFile        string
	port           uint
	interval       time.Duration
	deadAfter      time.Duration
	window         time.Duration
	acceptV1       bool
	replyRate      float64
	replyBurst     int
	serveUnclassed bool
	// key is the heartbeat key check read.
	key []byte
	// bindRetry is how long listenUntilBound waits between tries (5 s
	// when 0).
	bindRetry time.Duration
}

func (o *l2Options) bind(fs *flag.FlagSet) {
	fs.BoolVar(&o.enabled, "l2-announce", true, "answer ARP and NDP for the LoadBalancer addresses L2Announcements cover")
	fs.StringVar(&o.keyFile, "l2-key-file", "", "file holding the key agents sign heartbeats with (the same on every node; from a Secret)")
	fs.UintVar(&o.port, "l2-heartbeat-port", 7947, "UDP port agents exchange heartbeats on, on each node's InternalIP")
	fs.DurationVar(&o.interval, "l2-heartbeat-interval", 100*time.Millisecond, "how often an agent sends its heartbeat")
	fs.DurationVar(&o.deadAfter, "l2-dead-after", 400*time.Millisecond, "silence after which a peer is taken for dead and its addresses move")
	fs.DurationVar(&o.window, "l2-heartbeat-window", l2announce.DefaultWindow, "how far a heartbeat's time may be from the receiver's clock; older (replayed) or later ones are refused, so the nodes' clocks must agree closer than this")
	fs.BoolVar(&o.acceptV1, "l2-heartbeat-v1", true, "also take and send the previous release's heartbeats (version 1), so agents of both releases hear each other during an upgrade; turn off once every agent runs this release")
	fs.Float64Var(&o.replyRate, "l2-reply-rate", l2announce.DefaultReplyLimit.Rate, "ARP replies and neighbour advertisements a second one requester (Ethernet source for ARP, IPv6 source for NDP) gets on one interface, after --l2-reply-burst; requests over it go unanswered (frames_total{outcome=\"limited\"}); 0: no limit")
	fs.IntVar(&o.replyBurst, "l2-reply-burst", l2announce.DefaultReplyLimit.Burst, "replies one requester gets at once before --l2-reply-rate applies")
	fs.BoolVar(&o.serveUnclassed, "serve-unclassed-services", true, "announce LoadBalancer Services with no loadBalancerClass too (as berth-controller's flag of the same name)")
}

// check reads the heartbeat key and checks the timers, before anything
// starts: a missing or short key is an error that names the flag and the
// file (layer 2 is on by default, and agents without the shared key would
// take each other for dead).
func (o *l2Options) check() error {
	key, err := o.readKey()
	if err != nil {
		return err
	}
	if o.port == 0 || o.port > 65535 || o.interval <= 0 || o.deadAfter < 2*o.interval {
		return fmt.Errorf("--l2-heartbeat-port must be 1-65535 and --l2-dead-after at least twice --l2-heartbeat-interval")
	}
	if o.replyRate < 0 || o.replyBurst < 1 {
		return fmt.Errorf("--l2-reply-rate must be 0 (no limit) or more and --l2-reply-burst at least 1")
	}
	if o.window < o.deadAfter {
		return fmt.Errorf("--l2-heartbeat-window (%s) must be at least --l2-dead-after (%s)", o.window, o.deadAfter)
	}
	o.key = key
	return nil
}

func (o *l2Options) readKey() ([]byte, error) {
	if o.keyFile == "" {
		return nil, fmt.Errorf("no heartbeat key: pass --l2-key-file (a file holding a Secret's key, the same on every node), or --l2-announce=false to run without layer-2 announcement")
	}
	key, err := os.ReadFile(o.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--l2-key-file %s: %w (mount the heartbeat key Secret there, or pass --l2-announce=false)", o.keyFile, err)
	}
	key = bytes.TrimSpace(key)
	if len(key) < 16 {
		return nil, fmt.Errorf("--l2-key-file %s holds %d bytes; use at least 16 random bytes", o.keyFile, len(key))
	}
	return key, nil
}

// setup adds the layer-2 announcer: its runner (syncs, readiness check
// "l2", Node events), status writer, announcer and metrics.
func (o *l2Options) setup(ctx context.Context, mgr ctrl.Manager, node string) error {
	if o.key == nil {
		if err := o.check(); err != nil {
			return err
		}
	}
	key := o.key
	clk := clock.RealClock{}
	members := &l2announce.Members{Self: node, Key: key, DeadAfter: o.deadAfter, Window: o.window, AcceptV1: o.acceptV1, Now: clk.Now}
	metrics := l2announce.NewMetrics()
	for _, c := range metrics.Collectors() {
		if err := ctrlmetrics.Registry.Register(c); err != nil {
			return err
		}
	}
	status := &l2kube.StatusWriter{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("berth-agent"), Log: ctrl.Log.WithName("l2status")}
	runner := &l2kube.Runner{Node: node, Reader: mgr.GetCache(), HeartbeatPort: uint16(o.port), ServeUnclassed: o.serveUnclassed,
		Recorder: mgr.GetEventRecorder("berth-agent"), Log: ctrl.Log.WithName("l2")}
	ann := &l2announce.Announcer{
		Node:       node,
		Members:    members,
		Heartbeats: &l2announce.Heartbeats{Members: members, Interval: o.interval, Peers: runner.Peers},
		Settle:     o.deadAfter,
		Hold:       o.interval,
		Tick:       o.interval / 4,
		// RFC 5227 waits seconds; three probes 100 ms apart find a host
		// that holds the address, and a failover never probes.
		ProbeCount: 3, ProbeInterval: 100 * time.Millisecond, ProbeRetry: 2 * time.Second,
		Burst: 3, BurstInterval: 100 * time.Millisecond,
		Report:        status.Report,
		HealthChanged: runner.Trigger,
		Metrics:       metrics,
		Log:           ctrl.Log.WithName("l2"),
		Clock:         clk,
		Network:       l2announce.KernelNetwork{ReplyLimit: &l2announce.ReplyLimit{Rate: o.replyRate, Burst: o.replyBurst, Now: clk.Now}},
	}
	runner.Announcer = ann
	var bindErr atomic.Pointer[error]
	if err := mgr.AddReadyzCheck("l2", func(*http.Request) error {
		if err := bindErr.Load(); err != nil {
			return *err
		}
		return runner.Ready()
	}); err != nil {
		return err
	}
	if err := runner.Watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	for _, run := range []func(context.Context) error{
		runner.Start, status.Start,
		func(ctx context.Context) error {
			conns, err := o.listenUntilBound(ctx, mgr.GetCache(), node, &bindErr)
			if err != nil {
				return nil // ctx ended
			}
			return ann.Run(ctx, conns)
		},
	} {
		if err := mgr.Add(afterSync{mgr: mgr, run: run}); err != nil {
			return err
		}
	}
	return nil
}

// listenUntilBound tries listen every bindRetry until it works or ctx ends; a
// failure (the Node lists an InternalIP this host does not have, say)
// shows in the readiness check "l2" and the log meanwhile, and the rest of
// the agent keeps running.
func (o *l2Options) listenUntilBound(ctx context.Context, r client.Reader, node string, failed *atomic.Pointer[error]) ([]*net.UDPConn, error) {
	log := ctrl.Log.WithName("l2")
	retry := o.bindRetry
	if retry <= 0 {
		retry = 5 * time.Second
	}
	for {
		conns, err := o.listen(ctx, r, node)
		if err == nil {
			failed.Store(nil)
			return conns, nil
		}
		failed.Store(&err)
		log.Error(err, "layer 2 cannot start; trying again", "in", retry.String())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(retry):
		}
	}
}

// listen binds the heartbeat sockets on this node's InternalIPs (the first
// of each family; see l2announce.HeartbeatAddrs), read from its Node once
// the cache has synced: heartbeats are taken only from peers' InternalIPs,
// so they must leave from this node's, and nothing else need reach them.
func (o *l2Options) listen(ctx context.Context, r client.Reader, node string) ([]*net.UDPConn, error) {
	var n corev1.Node
	if err := r.Get(ctx, client.ObjectKey{Name: node}, &n); err != nil {
		return nil, fmt.Errorf("heartbeat sockets: read Node %s: %w", node, err)
	}
	var internal []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				internal = append(internal, ip)
			}
		}
	}
	addrs := l2announce.HeartbeatAddrs(internal)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("heartbeat sockets: Node %s lists no InternalIP to listen on (or pass --l2-announce=false)", node)
	}
	var conns []*net.UDPConn
	for _, a := range addrs {
		c, err := l2announce.ListenHeartbeats(netip.AddrPortFrom(a, uint16(o.port)))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("heartbeat socket on Node %s's InternalIP %s, --l2-heartbeat-port %d: %w", node, a, o.port, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}
