package quant

// The quantizers' search tables, computed from the codebooks as ggml's iq2xs_init_impl and
// iq3xs_init_impl compute them: for every point of the quantization lattice ({0..3}^8 packed
// in 16 bits for IQ1/IQ2, {0..7}^4 packed in 12 bits for IQ3) either its codebook index or a
// list of the codebook points nearest to it (all points at the nwant smallest squared
// distances, in order of distance then index). They are built once, on first use, and
// shared by every goroutine.

import "sync"

// latSearch holds one codebook's search tables. Its layout is ggml's: kmap[u] is the
// codebook index of the packed point u, or -(o+1) where neigh[o] is the number n of
// neighbours of u and neigh[o+1:o+1+n] are their codebook indices.
type latSearch struct {
	grid  [][8]int8 // the codebook points as ggml's quantizers see them: 2*coordinate+1
	kmap  []int32
	neigh []uint16
}

type latSearchOnce struct {
	once  sync.Once
	s     *latSearch
	g     *latGrid
	nwant int
}

func (o *latSearchOnce) get() *latSearch {
	o.once.Do(func() { o.s = buildLatSearch(o.g, o.nwant) })
	return o.s
}

// The search tables of each codebook; nwant is ggml's (IQ1_S and IQ1_M share theirs).
var (
	iq2xxsSearch = &latSearchOnce{g: iq2xxsGrid, nwant: 2}
	iq2xsSearch  = &latSearchOnce{g: iq2xsGrid, nwant: 2}
	iq2sSearch   = &latSearchOnce{g: iq2sGrid, nwant: 1}
	iq1Search    = &latSearchOnce{g: iq1sGrid, nwant: 3}
	iq3xxsSearch = &latSearchOnce{g: iq3xxsGrid, nwant: 2}
	iq3sSearch   = &latSearchOnce{g: iq3sGrid, nwant: 3}
)

func buildLatSearch(g *latGrid, nwant int) *latSearch {
	dim, shift := g.dim, g.shift
	mask := 1<<shift - 1
	// ggml's kmap sizes: 43692 = 0xAAAA+2 for the 8-dimensional codebooks (every packed
	// point up to all coordinates 2), 4096 for the 4-dimensional ones.
	kmapSize := 4096
	if dim == 8 {
		kmapSize = 43692
	}
	s := &latSearch{grid: make([][8]int8, len(g.pts)), kmap: make([]int32, kmapSize)}
	for k, p := range g.pts {
		for i := range dim {
			s.grid[k][i] = int8(2*(int(p)>>(shift*uint(i))&mask) + 1)
		}
	}
	for i := range s.kmap {
		s.kmap[i] = -1
	}
	for k, p := range g.pts {
		s.kmap[p] = int32(k)
	}

	// The squared distance from a lattice point u (coordinate i: 2*l_i+1) to codebook
	// point j is the sum over coordinates of (grid[j][i] - pos_i)^2. It is assembled from
	// two tables over half the coordinates each: lo[a][j] for the low half's digits a and
	// hi[b][j] for the high half's.
	half := dim / 2
	nhalf := 1 << (shift * uint(half))
	n := len(g.pts)
	lo := make([]uint16, nhalf*n)
	hi := make([]uint16, nhalf*n)
	for a := range nhalf {
		for j := range n {
			var dl, dh int
			for i := range half {
				pos := 2*(a>>(shift*uint(i))&mask) + 1
				dlo := int(s.grid[j][i]) - pos
				dhi := int(s.grid[j][half+i]) - pos
				dl += dlo * dlo
				dh += dhi * dhi
			}
			lo[a*n+j] = uint16(dl)
			hi[a*n+j] = uint16(dh)
		}
	}
	halfBits := shift * uint(half)
	dist := make([]uint16, n)
	const maxD2 = 4 * 14 * 14 // no squared distance is larger (4 coordinates 1..15; 8 coordinates give at most 8*6*6)
	var hist [maxD2 + 1]int32
	s.neigh = make([]uint16, 0, 1<<16)
	for u := range kmapSize {
		if s.kmap[u] >= 0 {
			continue
		}
		l := lo[(u&(nhalf-1))*n : (u&(nhalf-1))*n+n]
		h := hi[(u>>halfBits)*n : (u>>halfBits)*n+n]
		for j := range n {
			d := l[j] + h[j]
			dist[j] = d
			hist[d]++
		}
		// The neighbours are the points at the nwant smallest distinct distances, ordered
		// by distance and then by index (ggml sorts the (distance, index) pairs).
		var levels [3]uint16
		nl := 0
		for d := range hist {
			if hist[d] != 0 && nl < nwant {
				levels[nl] = uint16(d)
				nl++
			}
			hist[d] = 0
		}
		o := len(s.neigh)
		s.kmap[u] = -int32(o) - 1
		s.neigh = append(s.neigh, 0)
		for _, d := range levels[:nl] {
			for j := range n {
				if dist[j] == d {
					s.neigh = append(s.neigh, uint16(j))
				}
			}
		}
		s.neigh[o] = uint16(len(s.neigh) - o - 1)
	}
	return s
}

// neighbours returns the codebook points nearest to the packed point u, which is not in
// the codebook (kmap[u] < 0).
func (s *latSearch) neighbours(u int) []uint16 {
	o := -int(s.kmap[u]) - 1
	return s.neigh[o+1 : o+1+int(s.neigh[o])]
}
