package steering

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// TestSketchMatchesDDSketch: the window sketch answers what the library's
// DDSketch answers over the same mapping and store, within one bin (their
// rank rules differ by under one unit of weight), and does not depend on
// the scale of the weights.
func TestSketchMatchesDDSketch(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		draw func(r *rand.Rand) (v, w float64)
	}{
		{"one value", 1, func(*rand.Rand) (float64, float64) { return 850, 1 }},
		{"unit weights", 500, func(r *rand.Rand) (float64, float64) { return 300 + 4000*r.Float64(), 1 }},
		{"decayed weights", 2000, func(r *rand.Rand) (float64, float64) {
			return math.Exp(7 + r.NormFloat64()/2), math.Exp(r.Float64() * 5)
		}},
		{"two modes", 1000, func(r *rand.Rand) (float64, float64) {
			if r.IntN(10) == 0 {
				return 20000 + r.Float64()*1000, 2
			}
			return 40 + r.Float64()*10, 2
		}},
		{"large weights", 50, func(r *rand.Rand) (float64, float64) { return 1 + r.Float64()*9, 1e3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.n)))
			dd := ddsketch.NewDDSketch(valueMapping, store.NewBufferedPaginatedStore(), store.NewBufferedPaginatedStore())
			var s, tiny sketch
			for range tc.n {
				v, w := tc.draw(r)
				if err := dd.AddWithCount(v, w); err != nil {
					t.Fatal(err)
				}
				s.add(v, w)
				tiny.add(v, w*1e-9)
			}
			for _, q := range [][2]float64{{0.5, 0.9}, {0, 1}, {0.25, -1}, {0.99, 0.999}} {
				got1, got2 := s.quantiles(q[0], q[1])
				want1, err := dd.GetValueAtQuantile(q[0])
				if err != nil {
					t.Fatal(err)
				}
				want2 := -1.0
				if q[1] >= 0 {
					if want2, err = dd.GetValueAtQuantile(q[1]); err != nil {
						t.Fatal(err)
					}
				}
				if !close(got1, want1) || !close(got2, want2) {
					t.Errorf("quantiles %v: got %v, %v; DDSketch says %v, %v", q, got1, got2, want1, want2)
				}
				if t1, t2 := tiny.quantiles(q[0], q[1]); t1 != got1 || t2 != got2 {
					t.Errorf("quantiles %v with weights scaled by 1e-9: got %v, %v; unscaled %v, %v", q, t1, t2, got1, got2)
				}
			}
		})
	}
	var empty sketch
	if a, b := empty.quantiles(0.5, 0.9); a != -1 || b != -1 {
		t.Errorf("empty sketch: got %v, %v; want -1, -1", a, b)
	}
}

// close allows one bin of difference: the library sums counts in another
// order, and a rank on a bin boundary may round either way.
func close(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 2*sketchAccuracy*math.Max(math.Abs(a), math.Abs(b))+1e-9
}

func TestSketchScale(t *testing.T) {
	var s sketch
	for i := range 100 {
		s.add(float64(100+i), 4)
	}
	before, _ := s.quantiles(0.5, -1)
	s.scale(1e-6)
	after, _ := s.quantiles(0.5, -1)
	if before != after {
		t.Errorf("median moved from %v to %v under a uniform rescale", before, after)
	}
	if math.Abs(s.total-400e-6) > 1e-12 {
		t.Errorf("total %v after scaling 400 by 1e-6", s.total)
	}
}

func TestSketchForget(t *testing.T) {
	var s sketch
	for range 100 {
		s.add(5000, 1)
	}
	s.scale(0)
	if a, _ := s.quantiles(0.5, -1); a != -1 {
		t.Errorf("median after forgetting everything: %v, want -1", a)
	}
	s.add(100, 1)
	if a, b := s.quantiles(0.5, 0.9); !close(a, 100) || !close(b, 100) {
		t.Errorf("after forgetting 5000s and adding one 100: p50 %v p90 %v", a, b)
	}
}
