package proxy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Balance names a load-balancing method.
type Balance string

// The load-balancing methods.
const (
	RoundRobin Balance = "round_robin"
	LeastConn  Balance = "least_conn"
	IPHash     Balance = "ip_hash"
)

// ParseBalance validates a balancing method name.
func ParseBalance(s string) (Balance, error) {
	switch b := Balance(s); b {
	case RoundRobin, LeastConn, IPHash:
		return b, nil
	case "":
		return RoundRobin, nil
	}
	return "", fmt.Errorf("unknown balancing method %q; use round_robin, least_conn or ip_hash", s)
}

// ringPoints is the number of points each unit of weight places on the
// consistent-hash ring; enough that a node's share is within a few percent.
const ringPoints = 160

// Weights are reduced to the same proportions before the tables are built,
// so that weights like 600 and 500 cost no more than 6 and 5:
// maxOrderWeight bounds one round-robin period, maxRingWeight the ring
// (maxRingWeight*ringPoints points at most).
const (
	maxOrderWeight = 10000
	maxRingWeight  = 1000
)

// upstreamSet is an immutable snapshot of the upstreams and the balancing
// tables built from them. Only the round-robin counter changes.
type upstreamSet struct {
	list     []*upstream
	weights  []int // parallel to list, each at least 1
	byCookie map[string]*upstream
	seq      []int // smooth weighted round-robin order, indexes into list
	ring     []ringPoint
	rr       atomic.Uint64
}

type ringPoint struct {
	hash uint32
	idx  int
}

func newUpstreamSet(list []*upstream, weights []int) *upstreamSet {
	s := &upstreamSet{list: list, weights: weights, byCookie: make(map[string]*upstream, len(list))}
	for _, u := range list {
		s.byCookie[u.cookie] = u
	}
	s.seq = smoothWeightedOrder(weights)
	// No common divisor here: it would change when a node joins and move
	// clients between the nodes that stayed.
	ringWeights := scaleWeights(weights, maxRingWeight)
	for i, u := range list {
		for p := 0; p < ringPoints*ringWeights[i]; p++ {
			s.ring = append(s.ring, ringPoint{hash: hash32(u.key + "#" + strconv.Itoa(p)), idx: i})
		}
	}
	slices.SortFunc(s.ring, func(a, b ringPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return a.idx - b.idx
	})
	return s
}

// smoothWeightedOrder returns one period of NGINX's smooth weighted round
// robin: weights 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
func smoothWeightedOrder(weights []int) []int {
	if len(weights) == 0 {
		return nil
	}
	weights = scaleWeights(divideWeights(weights), maxOrderWeight)
	total := 0
	for _, w := range weights {
		total += w
	}
	current := make([]int, len(weights))
	seq := make([]int, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, best)
	}
	return seq
}

// hash32 is FNV-1a followed by a 64-bit finalizer: FNV alone spreads
// similar keys ("10.0.0.1:8090#7", sequential client addresses) unevenly on
// the ring.
// divideWeights divides weights (each at least 1) by their greatest common
// divisor.
func divideWeights(weights []int) []int {
	g := 0
	for _, w := range weights {
		a, b := g, w
		for b != 0 {
			a, b = b, a%b
		}
		g = a
	}
	out := make([]int, len(weights))
	for i, w := range weights {
		out[i] = w / max(g, 1)
	}
	return out
}

// scaleWeights scales weights whose sum exceeds limit down to about limit
// in the same proportions, keeping each at least 1.
func scaleWeights(weights []int, limit int) []int {
	sum := 0.0
	for _, w := range weights {
		sum += float64(w)
	}
	if sum <= float64(limit) {
		return weights
	}
	out := make([]int, len(weights))
	for i, w := range weights {
		out[i] = max(1, int(float64(w)*float64(limit)/sum))
	}
	return out
}

func hash32(s string) uint32 {
	x := uint64(14695981039346656037) // FNV-1a 64, inline: no allocation
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= 1099511628211
	}
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return uint32(x)
}

// pickOptions is what a pick needs to know about the request.
type pickOptions struct {
	balance  Balance
	clientIP string
	cookie   string // sticky cookie value, "" for none
	tried    []*upstream
	now      time.Time
	// slowStart, when above 0, lets an upstream that is warming up take
	// only its share of the requests (upstream.share).
	slowStart time.Duration
}

func (o *pickOptions) eligible(u *upstream) bool {
	return !slices.Contains(o.tried, u) && u.available(o.now)
}

// pick chooses an upstream, or nil when none is eligible.
func (s *upstreamSet) pick(o *pickOptions) *upstream {
	if len(s.list) == 0 {
		return nil
	}
	if o.cookie != "" {
		if u, ok := s.byCookie[o.cookie]; ok && o.eligible(u) {
			return u
		}
	}
	switch o.balance {
	case IPHash:
		return s.pickHash(o)
	case LeastConn:
		return s.pickLeastConn(o)
	default:
		return s.pickRoundRobin(o)
	}
}

func (s *upstreamSet) pickRoundRobin(o *pickOptions) *upstream {
	n := s.rr.Add(1) - 1
	var u *upstream
	for i := range uint64(len(s.seq)) {
		if v := s.list[s.seq[(n+i)%uint64(len(s.seq))]]; o.eligible(v) {
			u = v
			break
		}
	}
	if o.slowStart <= 0 {
		return u
	}
	// An upstream in slow start takes its turn with the probability of
	// its share. A turn it passes on goes to another upstream at random
	// by weight (the next in the order would take all of it), which may
	// pass it on in turn, a few times at most. The first that passed is
	// the fallback when no other can take the request.
	var passed [3]*upstream
	npassed := 0
	for u != nil && npassed < len(passed) {
		if f := u.share(o.now, o.slowStart); f >= 1 || rand.Float64() < f {
			return u
		}
		passed[npassed] = u
		npassed++
		u = s.randomByWeight(o, passed[:npassed])
	}
	if u == nil && npassed > 0 {
		return passed[0]
	}
	return u
}

// randomByWeight picks an eligible upstream other than those in not, at
// random by weight; nil when there is none.
func (s *upstreamSet) randomByWeight(o *pickOptions, not []*upstream) *upstream {
	total := 0
	for i, u := range s.list {
		if o.eligible(u) && !slices.Contains(not, u) {
			total += s.weights[i]
		}
	}
	if total == 0 {
		return nil
	}
	r := rand.IntN(total)
	for i, u := range s.list {
		if o.eligible(u) && !slices.Contains(not, u) {
			if r < s.weights[i] {
				return u
			}
			r -= s.weights[i]
		}
	}
	return nil // eligibility changed between the two walks
}

// pickLeastConn picks the eligible upstream with the fewest in-flight
// requests per unit of weight; ties go round robin. An upstream in slow
// start counts as one of a smaller weight; picked with nothing in flight
// (when requests are few, every upstream ties at zero and the weight
// tells nothing), it takes the request with the probability of its share
// and passes it on to the least loaded of the others otherwise.
func (s *upstreamSet) pickLeastConn(o *pickOptions) *upstream {
	best := s.leastConn(o)
	if best == nil || o.slowStart <= 0 || best.inflight.Load() > 0 {
		return best
	}
	// A warming upstream passes the turns beyond its share to another,
	// ties among the others broken at random so that they share them
	// evenly and the round-robin start moves on once per pick.
	if f := best.share(o.now, o.slowStart); f < 1 && rand.Float64() >= f {
		if other := s.leastConnOther(o, best); other != nil {
			return other
		}
	}
	return best
}

// leastConn is pickLeastConn's choice; ties go to the first in the list's
// order from a start that moves on each pick.
func (s *upstreamSet) leastConn(o *pickOptions) *upstream {
	start := s.rr.Add(1) - 1
	var best *upstream
	var bestLoad float64
	for i := range uint64(len(s.list)) {
		j := int((start + i) % uint64(len(s.list)))
		if !o.eligible(s.list[j]) {
			continue
		}
		if load := s.load(j, o); best == nil || load < bestLoad {
			best, bestLoad = s.list[j], load
		}
	}
	return best
}

// leastConnOther is leastConn's choice among the upstreams other than not,
// with ties broken at random.
func (s *upstreamSet) leastConnOther(o *pickOptions, not *upstream) *upstream {
	var best *upstream
	var bestLoad float64
	ties := 0
	for j, u := range s.list {
		if u == not || !o.eligible(u) {
			continue
		}
		switch load := s.load(j, o); {
		case best == nil || load < bestLoad:
			best, bestLoad, ties = u, load, 1
		case load == bestLoad:
			if ties++; rand.IntN(ties) == 0 {
				best = u
			}
		}
	}
	return best
}

// load is the requests in flight to the j-th upstream per unit of its
// weight, scaled down by its slow-start share.
func (s *upstreamSet) load(j int, o *pickOptions) float64 {
	u := s.list[j]
	return float64(u.inflight.Load()) / (float64(s.weights[j]) * u.share(o.now, o.slowStart))
}

// pickHash walks the consistent-hash ring from the client's point, so that a
// change of the set moves only the clients of the node that changed.
func (s *upstreamSet) pickHash(o *pickOptions) *upstream {
	h := hash32(o.clientIP)
	i, _ := slices.BinarySearchFunc(s.ring, h, func(p ringPoint, h uint32) int {
		switch {
		case p.hash < h:
			return -1
		case p.hash > h:
			return 1
		}
		return 0
	})
	for j := range len(s.ring) {
		u := s.list[s.ring[(i+j)%len(s.ring)].idx]
		if o.eligible(u) {
			return u
		}
		if len(o.tried) == len(s.list) {
			break
		}
	}
	return nil
}

// retryAfter is the shortest wait until some upstream is eligible again.
func (s *upstreamSet) retryAfter(now time.Time) time.Duration {
	best := time.Duration(-1)
	for _, u := range s.list {
		if d := u.retryAfter(now); best < 0 || d < best {
			best = d
		}
	}
	return best
}
