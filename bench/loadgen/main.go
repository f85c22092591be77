// Command bench-loadgen is the benchmark's load generator in Go, so that neither system is
// limited by a JavaScript client: etcd is driven through its own client library
// (go.etcd.io/etcd/client/v3), our node through google.golang.org/grpc with messages of
// proto/paxos.proto encoded by hand (protowire), both over one connection to the leader with
// N goroutines in a closed loop.
//
// It speaks the protocol of bench/load.ts, so that bench/run.ts can use either:
//
//	bench-loadgen '<json spec>'
//
// prints {"event":"ready","leader":"host:port"}, then runs one level per stdin line
// ({"cmd":"run","concurrency":64,"op":"put"|"get"}) until {"cmd":"exit"} or end of input,
// printing {"event":"measure",...} when the measured window opens and {"event":"result",...}
// when it closes. Puts write a random key with a fixed value of valueBytes bytes; gets read a
// random key among those this process wrote (linearizable on both systems: etcd's default
// Get, our Get's read index). {"cmd":"fill","concurrency":256,"count":1000000} puts new keys
// until this process has written `count` in all, then prints {"event":"filled",...}.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// spec is the JSON argument, the LoadSpec of bench/load.ts.
type spec struct {
	System     string   `json:"system"`
	Endpoints  []string `json:"endpoints"`
	DurationMs int      `json:"durationMs"`
	WarmupMs   int      `json:"warmupMs"`
	ValueBytes int      `json:"valueBytes"`
	Pipeline   bool     `json:"pipeline"`
}

type command struct {
	Cmd         string `json:"cmd"`
	Concurrency int    `json:"concurrency"`
	Op          string `json:"op"`
	Count       int    `json:"count"`
}

// target is one system: a put and a get callable from many goroutines at once.
type target interface {
	leader() string
	put(ctx context.Context, worker int, seq uint64, key string, value []byte) error
	get(ctx context.Context, key string) error
	close()
}

var out = json.NewEncoder(os.Stdout)
var outMu sync.Mutex

func emit(v any) {
	outMu.Lock()
	defer outMu.Unlock()
	if err := out.Encode(v); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: write: %v\n", err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-loadgen '<json spec>'")
		os.Exit(2)
	}
	var s spec
	if err := json.Unmarshal([]byte(os.Args[1]), &s); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: bad spec: %v\n", err)
		os.Exit(2)
	}
	if len(s.Endpoints) == 0 || s.DurationMs <= 0 || s.WarmupMs < 0 || s.ValueBytes <= 0 || s.ValueBytes > 1<<20 {
		fmt.Fprintln(os.Stderr, "loadgen: spec needs endpoints, durationMs > 0, warmupMs >= 0, 0 < valueBytes <= 1 MiB")
		os.Exit(2)
	}
	var t target
	var err error
	switch s.System {
	case "etcd":
		t, err = newEtcd(s.Endpoints)
	case "ours":
		t, err = newOurs(s.Endpoints, s.Pipeline)
	default:
		err = fmt.Errorf("unknown system %q", s.System)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	defer t.close()
	value := make([]byte, s.ValueBytes)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range value {
		value[i] = alphabet[mrand.IntN(len(alphabet))]
	}
	emit(map[string]any{"event": "ready", "system": s.System, "leader": t.leader(), "client": "go"})
	keys := &keyRing{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		var c command
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: bad command %q: %v\n", line, err)
			os.Exit(2)
		}
		if c.Cmd == "exit" {
			return
		}
		if c.Concurrency < 1 || c.Concurrency > 10_000 {
			fmt.Fprintf(os.Stderr, "loadgen: concurrency %d out of 1..10000\n", c.Concurrency)
			os.Exit(2)
		}
		if c.Cmd == "fill" {
			if c.Count < 0 || c.Count > 1<<20 {
				fmt.Fprintf(os.Stderr, "loadgen: fill count %d out of 0..%d\n", c.Count, 1<<20)
				os.Exit(2)
			}
			emit(fill(s, t, c, value, keys))
			continue
		}
		if c.Op == "" {
			c.Op = "put"
		}
		emit(runLevel(s, t, c, value, keys))
	}
}

// keyRing remembers up to 1<<20 keys written, for the gets.
type keyRing struct {
	mu   sync.Mutex
	keys []string
	next int
}

func (r *keyRing) add(k string) {
	r.mu.Lock()
	if len(r.keys) < 1<<20 {
		r.keys = append(r.keys, k)
	} else {
		r.keys[r.next] = k
		r.next = (r.next + 1) % len(r.keys)
	}
	r.mu.Unlock()
}

func (r *keyRing) pick() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return "bench/none"
	}
	return r.keys[mrand.IntN(len(r.keys))]
}

func (r *keyRing) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

// fill puts new keys until `c.Count` were written by this process in all (errors are counted
// and retried with a new key; a put that fails 1,000 times in a row ends it).
func fill(s spec, t target, c command, value []byte, keys *keyRing) map[string]any {
	start := time.Now()
	var left atomic.Int64
	left.Store(int64(c.Count - keys.size()))
	var errs, streak atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for left.Add(-1) >= 0 && streak.Load() < 1000 {
				k := randomKey()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := t.put(ctx, w, nextSeq(w), k, value)
				cancel()
				if err != nil {
					errs.Add(1)
					streak.Add(1)
					left.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				streak.Store(0)
				keys.add(k)
			}
		}(w)
	}
	wg.Wait()
	return map[string]any{"event": "filled", "system": s.System, "written": keys.size(), "errors": errs.Load(), "seconds": round(time.Since(start).Seconds(), 1)}
}

func randomKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "bench/" + hex.EncodeToString(b[:])
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// rssMB is this process's VmRSS.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return math.NaN()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return math.NaN()
}

var seqs sync.Map // worker -> *atomic.Uint64 (our sessions' sequence numbers, across levels)

func nextSeq(worker int) uint64 {
	v, _ := seqs.LoadOrStore(worker, new(atomic.Uint64))
	return v.(*atomic.Uint64).Add(1)
}

func runLevel(s spec, t target, c command, value []byte, keys *keyRing) map[string]any {
	start := time.Now()
	measureFrom := start.Add(time.Duration(s.WarmupMs) * time.Millisecond)
	measureTo := measureFrom.Add(time.Duration(s.DurationMs) * time.Millisecond)
	lat := make([][]float64, c.Concurrency)
	var errs atomic.Int64
	var sampleMu sync.Mutex
	sample := ""
	// The window's CPU and RSS, taken by the timers (or after the workers, should they all be
	// done before the end timer fired: then the window has just closed).
	var winMu sync.Mutex
	var cpu0, cpu1, rssMax float64
	var opened, closed bool
	openWindow := func() {
		winMu.Lock()
		defer winMu.Unlock()
		if !opened {
			opened, cpu0 = true, cpuSeconds()
		}
	}
	closeWindow := func() {
		winMu.Lock()
		defer winMu.Unlock()
		if !closed {
			closed, cpu1, rssMax = true, cpuSeconds(), rssMB()
		}
	}
	measureTimer := time.AfterFunc(time.Until(measureFrom), func() {
		openWindow()
		emit(map[string]any{"event": "measure", "system": s.System, "concurrency": c.Concurrency, "op": c.Op})
	})
	endTimer := time.AfterFunc(time.Until(measureTo), closeWindow)
	var wg sync.WaitGroup
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mine := make([]float64, 0, 4096)
			for {
				t0 := time.Now()
				if !t0.Before(measureTo) {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				if c.Op == "get" {
					err = t.get(ctx, keys.pick())
				} else {
					k := randomKey()
					err = t.put(ctx, w, nextSeq(w), k, value)
					if err == nil {
						keys.add(k)
					}
				}
				cancel()
				t1 := time.Now()
				if err != nil {
					errs.Add(1)
					sampleMu.Lock()
					if sample == "" {
						sample = err.Error()
					}
					sampleMu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if !t0.Before(measureFrom) && !t1.After(measureTo) {
					mine = append(mine, float64(t1.Sub(t0).Nanoseconds())/1e6)
				}
			}
			lat[w] = mine
		}(w)
	}
	wg.Wait()
	if measureTimer.Stop() {
		openWindow() // never opened: no window, no CPU
	}
	endTimer.Stop()
	closeWindow()
	winMu.Lock()
	clientCPU := cpu1 - cpu0
	winMu.Unlock()
	all := make([]float64, 0)
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Float64s(all)
	mean := 0.0
	for _, v := range all {
		mean += v
	}
	if len(all) > 0 {
		mean /= float64(len(all))
	}
	secs := float64(s.DurationMs) / 1000
	res := map[string]any{
		"event":         "result",
		"system":        s.System,
		"op":            c.Op,
		"concurrency":   c.Concurrency,
		"ops":           len(all),
		"errors":        errs.Load(),
		"seconds":       secs,
		"wps":           round(float64(len(all))/secs, 1),
		"p50_ms":        round(pct(all, 50), 3),
		"p90_ms":        round(pct(all, 90), 3),
		"p99_ms":        round(pct(all, 99), 3),
		"max_ms":        round(pct(all, 100), 3),
		"mean_ms":       round(mean, 3),
		"client_cpu_s":  round(clientCPU, 3),
		"client_rss_mb": round(rssMax, 1),
	}
	if sample != "" {
		res["error_sample"] = sample
	}
	return res
}

// pct is the nearest-rank percentile, as bench/lib/stats.ts; null (NaN dropped) when empty.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(len(sorted)-1, max(0, rank-1))]
}

func round(v float64, digits int) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	f := math.Pow(10, float64(digits))
	return math.Round(v*f) / f
}

// ------------------------------------------------------------------------------- etcd

type etcdTarget struct {
	addr   string
	client *clientv3.Client
}

func newEtcd(endpoints []string) (*etcdTarget, error) {
	// The leader's endpoint only, as for ours: a follower would forward the proposal.
	leader := endpoints[0]
	for _, ep := range endpoints {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx, ep)
		cancel()
		_ = c.Close()
		if err == nil && st.Leader == st.Header.MemberId {
			leader = ep
		}
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{leader}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "bench/probe", "x"); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("etcd probe put: %w", err)
	}
	return &etcdTarget{addr: leader, client: c}, nil
}

func (e *etcdTarget) leader() string { return e.addr }
func (e *etcdTarget) put(ctx context.Context, _ int, _ uint64, key string, value []byte) error {
	_, err := e.client.Put(ctx, key, string(value))
	return err
}
func (e *etcdTarget) get(ctx context.Context, key string) error {
	_, err := e.client.Get(ctx, key) // linearizable by default
	return err
}
func (e *etcdTarget) close() { _ = e.client.Close() }

// ------------------------------------------------------------------------------- ours

// rawCodec passes pre-encoded protobuf bytes through gRPC (the messages are built with
// protowire below): no generated stubs needed.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *b, nil
}
func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

type oursTarget struct {
	addr    string
	conn    *grpc.ClientConn
	session string
	pipe    *pipeline // nil: unary calls
}

func dialOurs(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(16<<20)),
		grpc.WithDisableRetry(),
	)
}

func header(client string, seq uint64) []byte {
	var h []byte
	h = protowire.AppendTag(h, 1, protowire.BytesType)
	h = protowire.AppendString(h, client)
	h = protowire.AppendTag(h, 2, protowire.VarintType)
	h = protowire.AppendVarint(h, seq)
	return h
}

func putRequest(client string, seq uint64, key string, value []byte) []byte {
	b := make([]byte, 0, 64+len(key)+len(value))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, header(client, seq))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, value)
	return b
}

func getRequest(key string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, header("reader", 1))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, key)
	return b
}

// notLeaderHint is the leader address of a NOT_LEADER answer ("" when none).
func notLeaderHint(tr metadata.MD) string {
	if v := tr.Get("x-paxos-error"); len(v) == 0 || v[0] != "not-leader" {
		return ""
	}
	if v := tr.Get("x-paxos-leader-addr"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func newOurs(endpoints []string, pipelined bool) (*oursTarget, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	session := "go-" + hex.EncodeToString(b[:])
	// Find the leader: a probe put, following NOT_LEADER hints, for up to 20 s.
	addr := endpoints[0]
	deadline := time.Now().Add(20 * time.Second)
	var lastErr error
	for i := 0; time.Now().Before(deadline); i++ {
		conn, err := dialOurs(addr)
		if err != nil {
			return nil, err
		}
		var tr metadata.MD
		var resp []byte
		req := putRequest(session+"/probe", uint64(i+1), "bench/probe", []byte("x"))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = conn.Invoke(ctx, "/paxos.v1.KvService/Put", &req, &resp, grpc.Trailer(&tr))
		cancel()
		_ = conn.Close()
		if err == nil {
			break
		}
		lastErr = err
		if hint := notLeaderHint(tr); hint != "" {
			addr = hint
		} else {
			addr = endpoints[(i+1)%len(endpoints)]
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !time.Now().Before(deadline) {
		return nil, fmt.Errorf("no leader found: %v", lastErr)
	}
	conn, err := dialOurs(addr)
	if err != nil {
		return nil, err
	}
	t := &oursTarget{addr: addr, conn: conn, session: session}
	if pipelined {
		p, err := openPipeline(conn)
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		t.pipe = p
	}
	return t, nil
}

func (o *oursTarget) leader() string { return o.addr }

func (o *oursTarget) put(ctx context.Context, worker int, seq uint64, key string, value []byte) error {
	req := putRequest(o.session+"/"+strconv.Itoa(worker), seq, key, value)
	if o.pipe != nil {
		return o.pipe.call(ctx, 2, req)
	}
	var resp []byte
	return o.conn.Invoke(ctx, "/paxos.v1.KvService/Put", &req, &resp)
}

func (o *oursTarget) get(ctx context.Context, key string) error {
	req := getRequest(key)
	if o.pipe != nil {
		return o.pipe.call(ctx, 3, req)
	}
	var resp []byte
	return o.conn.Invoke(ctx, "/paxos.v1.KvService/Get", &req, &resp)
}

func (o *oursTarget) close() {
	if o.pipe != nil {
		o.pipe.close()
	}
	_ = o.conn.Close()
}

// pipeline multiplexes requests over one KvService/Pipeline stream (KvRequest/KvResponse with
// request ids), as our client library's pipeline mode does.
type pipeline struct {
	stream  grpc.ClientStream
	cancel  context.CancelFunc
	sendMu  sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan error
	broken  error
}

func openPipeline(conn *grpc.ClientConn) (*pipeline, error) {
	ctx, cancel := context.WithCancel(context.Background())
	desc := &grpc.StreamDesc{StreamName: "Pipeline", ServerStreams: true, ClientStreams: true}
	st, err := conn.NewStream(ctx, desc, "/paxos.v1.KvService/Pipeline")
	if err != nil {
		cancel()
		return nil, err
	}
	p := &pipeline{stream: st, cancel: cancel, waiting: map[uint64]chan error{}}
	go p.receive()
	return p, nil
}

func (p *pipeline) receive() {
	for {
		var msg []byte
		if err := p.stream.RecvMsg(&msg); err != nil {
			p.fail(err)
			return
		}
		id, res := parseKvResponse(msg)
		p.mu.Lock()
		ch := p.waiting[id]
		delete(p.waiting, id)
		p.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
}

func (p *pipeline) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken == nil {
		p.broken = fmt.Errorf("pipeline stream ended: %w", err)
	}
	for id, ch := range p.waiting {
		ch <- p.broken
		delete(p.waiting, id)
	}
}

// call sends one request (field 2 = put, 3 = get of KvRequest) and waits for its response.
func (p *pipeline) call(ctx context.Context, field protowire.Number, body []byte) error {
	ch := make(chan error, 1)
	p.mu.Lock()
	if p.broken != nil {
		p.mu.Unlock()
		return p.broken
	}
	p.nextID++
	id := p.nextID
	p.waiting[id] = ch
	p.mu.Unlock()
	msg := make([]byte, 0, len(body)+16)
	msg = protowire.AppendTag(msg, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, id)
	msg = protowire.AppendTag(msg, field, protowire.BytesType)
	msg = protowire.AppendBytes(msg, body)
	p.sendMu.Lock()
	err := p.stream.SendMsg(&msg)
	p.sendMu.Unlock()
	if err != nil {
		p.fail(err)
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.waiting, id)
		p.mu.Unlock()
		return ctx.Err()
	}
}

func (p *pipeline) close() {
	_ = p.stream.CloseSend()
	p.cancel()
}

// parseKvResponse returns the request id and nil, or the KvError (field 7) as an error.
func parseKvResponse(b []byte) (uint64, error) {
	var id uint64
	var resErr error
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return id, errors.New("bad KvResponse")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return id, errors.New("bad KvResponse id")
			}
			id, b = v, b[m:]
		case num == 7 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return id, errors.New("bad KvError")
			}
			resErr = parseKvError(v)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return id, errors.New("bad KvResponse field")
			}
			b = b[m:]
		}
	}
	return id, resErr
}

func parseKvError(b []byte) error {
	code, msg := int64(0), ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return errors.New("bad KvError")
			}
			code, b = int64(v), b[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return errors.New("bad KvError")
			}
			msg, b = string(v), b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return errors.New("bad KvError")
			}
			b = b[m:]
		}
	}
	return fmt.Errorf("server error %d: %s", code, msg)
}
