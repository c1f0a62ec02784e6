"""Single-pass absorbed MLA decode: each cached latent read once (FlashMLA's design, on a CPU).

``helpers.mla.absorbed_attention_explicit`` decodes in two passes over the cache: every latent is read
for the scores, then the softmax needs the maximum of all of them, then every latent is read again for
the weighted sum. At a long context the cache does not fit in any CPU cache, so the step reads it from
memory twice, and with only H query rows both passes are skinny matrix products that torch's CPU matmul
runs far below the memory bandwidth (``helpers.bench.roofline`` measures it).

The single-pass form keeps, per head, a running maximum ``m``, a running sum ``l`` of ``exp(score − m)``
and a running weighted sum ``acc`` of latents. For each tile of latents it computes the tile's scores,
raises ``m`` if the tile holds a larger score (rescaling ``l`` and ``acc`` by ``exp(m_old − m_new)``),
and adds the tile's ``exp(score − m)`` and weighted latents. At the end ``acc / l`` is exactly the
softmax-weighted sum (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"; FlashMLA
blocks its decode the same way). Each tile is read from memory once; its second use comes from the
core's own cache.

Two implementations, tested equal to the two-pass path:

* ``"c++"``: a small C++ loop compiled on first use with ``torch.utils.cpp_extension.load_inline``
  (needs a C++ compiler and ninja; the build is cached under ``~/.cache/torch_extensions``). Compiled
  with ``-ffast-math`` (the compiler may reorder the sums, which is what lets it vectorise them; no
  infinities are used: the running max starts at the largest negative float), so it agrees with the
  two-pass path to float32 rounding, not bit for bit. Its inputs must be finite. Its two inner loops
  (the tile's scores, the weighted sum) exist three times, and ``-march=native`` picks one
  (``vector_path()`` says which):

  - ``"avx512"`` where the CPU has AVX-512 (``__AVX512F__``): the arithmetic written with AVX-512
    intrinsics so that eight independent 16-wide sums stay in registers (two latents × four heads for
    the scores, 32 floats × four heads for the sum); the compiler's own vectorisation of the portable
    loops reached about a third of that speed on a Sapphire Rapids core;
  - ``"avx2"`` where it has AVX2 and FMA but not AVX-512 (AMD Zen 3, older Intel): twelve 8-wide sums
    (three latents × four heads; 24 floats × four heads), each loaded vector pinned in a register (GCC
    otherwise folds the load into every FMA that uses it, and the loop ran out of load slots), and a
    prefetch cursor that reads the next tile while this one is computed. On a Zen 3 core (one thread,
    4 heads, Dc 512, Dr 64, 32K latents: 75 MB) the loop went from 9.9 to 5.9 ms; on latents already
    in the core's caches it takes 3.7 ms, and a plain read of the 75 MB takes ~3.9 ms, so the rest is
    reads that the arithmetic does not hide (spreading the prefetches evenly over both inner loops
    mattered: fetching a tile's RoPE keys in one burst cost ~10%, two lines per step ~20%);
  - ``"portable"``: plain C++ loops that the compiler vectorises, for every other CPU and for what the
    intrinsics leave (head counts that are not a multiple of 4, widths that are not multiples of the
    vector, the last latents of a tile).

  ``tests/test_fused_mla.py`` builds each path this CPU can run and holds them equal;
* ``"torch"``: the same algorithm in readable torch, block by block (the fallback wherever the C++ one
  cannot be built, or when ``COURSE_FUSED_MLA=torch``). It reads each block once from memory too, but
  its products are the same skinny matmuls, so it is no faster than the two-pass path: the point of
  the C++ loop is the inner arithmetic, which stays in registers and L1.

Decode only: one query position per sequence (T = 1), all S cached positions visible. Anything else
(a prefill, T > 1) goes to ``absorbed_attention_explicit``. Shapes as there: q_lat (B, H, 1, Dc),
q_pe (B, H, 1, Dr), c_kv (B, S, Dc), k_pe (B, S, Dr) → (B, H, 1, Dc); float32 on the CPU for the C++ loop.
"""

from __future__ import annotations

import math
import os

import torch

from .validate import check_int

BACKEND_VAR = "COURSE_FUSED_MLA"  # "torch" forces the readable fallback
TILE = 32  # latents per tile of the C++ loop: 32 rows (74 KB) stay in the core's L2 for their second use
BLOCK = 4096  # latents per block of the torch fallback

_SOURCE = r"""
#include <torch/extension.h>
#include <cmath>
#include <limits>
#include <vector>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define COURSE_AVX2 1
// Keep a loaded vector in a register. Without this GCC folds the load into every FMA that uses it
// (vfmadd231ps ymm, ymm, [mem]): a latent vector that meets four heads is then loaded four times, and
// the loop runs out of load slots (two 256-bit loads per cycle on Zen 3) before it runs out of FMAs.
#if defined(__GNUC__)
#define PIN(v) __asm__("" : "+x"(v))
#else
#define PIN(v) (void)(v)
#endif

static inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

// The prefetch cursor. A core's hardware prefetchers stop at 4 KB pages and keep few reads in flight,
// so at one latent per few hundred cycles of arithmetic the loop waited on memory much of the time. The
// cursor walks the NEXT tile, one cache line of latents per step of either inner loop (there are more
// steps than lines) and one line of RoPE keys every Dc/Dr steps, so the reads are spread evenly over
// the arithmetic (prefetching a tile's RoPE keys all at once, at the tile's start, was ~10% slower).
struct Cursor {
  const char *c, *c_end, *pe, *pe_end;
  int64_t every, count;  // a RoPE line after every `every` latent lines
  inline void step() {
    if (c < c_end) {
      _mm_prefetch(c, _MM_HINT_T0);
      c += 64;
      if (++count == every) {
        count = 0;
        if (pe < pe_end) {
          _mm_prefetch(pe, _MM_HINT_T0);
          pe += 64;
        }
      }
    }
  }
};

// Scores of three latents (rows x, x + D, x + 2D of width D = Dc, then their RoPE parts of width Dr)
// against four heads' query rows: twelve 8-wide sums in registers, three latent vectors and one query
// vector loaded per step (7 loads for 12 FMAs). out[r * H + k] = score of row r, head k.
static inline void scores3x4(const float* row, const float* pe, const float* q, const float* qp, int64_t Dc,
                             int64_t Dr, int64_t H, float sc, float* out, Cursor& cur) {
  __m256 a[3][4];
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 4; ++k) a[r][k] = _mm256_setzero_ps();
  auto add = [&](const float* x, const float* w, int64_t n) {  // x: the three rows (stride n), w: the heads
    for (int64_t c = 0; c < n; c += 8) {
      cur.step();
      __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + n + c);
      __m256 x2 = _mm256_loadu_ps(x + 2 * n + c);
      PIN(x0); PIN(x1); PIN(x2);
      for (int k = 0; k < 4; ++k) {
        __m256 qk = _mm256_loadu_ps(w + k * n + c);
        PIN(qk);
        a[0][k] = _mm256_fmadd_ps(qk, x0, a[0][k]);
        a[1][k] = _mm256_fmadd_ps(qk, x1, a[1][k]);
        a[2][k] = _mm256_fmadd_ps(qk, x2, a[2][k]);
      }
    }
  };
  add(row, q, Dc);
  add(pe, qp, Dr);
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 4; ++k) out[r * H + k] = hsum8(a[r][k]) * sc;
}

// acc[k] += sum over the tile's n rows of w[r * 4 + k] * row r, for four heads (acc rows a, a + Dc, ...):
// 24 floats of each head in twelve registers while the rows stream past, then 8 at a time.
static inline void weighted4(const float* rows, const float* w, int64_t n, int64_t Dc, float* a,
                             Cursor& cur) {
  int64_t c0 = 0;
  for (; c0 + 24 <= Dc; c0 += 24) {
    __m256 x[4][3];
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 3; ++j) x[k][j] = _mm256_loadu_ps(a + k * Dc + c0 + 8 * j);
    for (int64_t r = 0; r < n; ++r) {
      cur.step();
      const float* v = rows + r * Dc + c0;
      __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16);
      PIN(v0); PIN(v1); PIN(v2);
      for (int k = 0; k < 4; ++k) {
        const __m256 wk = _mm256_broadcast_ss(w + r * 4 + k);
        x[k][0] = _mm256_fmadd_ps(wk, v0, x[k][0]);
        x[k][1] = _mm256_fmadd_ps(wk, v1, x[k][1]);
        x[k][2] = _mm256_fmadd_ps(wk, v2, x[k][2]);
      }
    }
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 3; ++j) _mm256_storeu_ps(a + k * Dc + c0 + 8 * j, x[k][j]);
  }
  for (; c0 < Dc; c0 += 8) {  // Dc is a multiple of 8 on this path
    __m256 x[4];
    for (int k = 0; k < 4; ++k) x[k] = _mm256_loadu_ps(a + k * Dc + c0);
    for (int64_t r = 0; r < n; ++r) {
      __m256 v = _mm256_loadu_ps(rows + r * Dc + c0);
      PIN(v);
      for (int k = 0; k < 4; ++k) x[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(w + r * 4 + k), v, x[k]);
    }
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(a + k * Dc + c0, x[k]);
  }
}
#endif

// One sequence at a time, one tile of latents at a time: scores for the tile (every head), the running
// max per head raised if needed (rescaling the running sum and the accumulator), then the tile's
// exp(score - m) and weighted latents added. Each latent is read from memory once.
torch::Tensor fused_decode(torch::Tensor q_lat, torch::Tensor q_pe, torch::Tensor c_kv, torch::Tensor k_pe,
                           double scale, int64_t tile) {
  const int64_t B = c_kv.size(0), S = c_kv.size(1), Dc = c_kv.size(2), Dr = k_pe.size(2), H = q_lat.size(1);
  auto out = torch::zeros({B, H, Dc}, c_kv.options());
  const float* ql = q_lat.data_ptr<float>();
  const float* qp = q_pe.data_ptr<float>();
  const float* ckv = c_kv.data_ptr<float>();
  const float* kpe = k_pe.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  std::vector<float> m(H), l(H), s(tile * H), w(tile * 4);
  for (int64_t b = 0; b < B; ++b) {
    float* acc = o + b * H * Dc;
    const float* qlb = ql + b * H * Dc;
    const float* qpb = qp + b * H * Dr;
    for (int64_t h = 0; h < H; ++h) {  // finite, not -inf: see the flags
      m[h] = -std::numeric_limits<float>::max();
      l[h] = 0.f;
    }
#ifdef COURSE_AVX2
    const bool avx2 = Dc % 8 == 0 && Dr % 8 == 0 && H % 4 == 0;
    Cursor cur{reinterpret_cast<const char*>(ckv + (b * S + std::min(tile, S)) * Dc), nullptr,
               reinterpret_cast<const char*>(kpe + (b * S + std::min(tile, S)) * Dr), nullptr,
               std::max<int64_t>(1, Dc / std::max<int64_t>(Dr, 1)), 0};
#endif
    for (int64_t t0 = 0; t0 < S; t0 += tile) {
      const int64_t n = std::min(tile, S - t0);
#ifdef COURSE_AVX2
      // the cursor may run as far as the end of the next tile
      cur.c_end = reinterpret_cast<const char*>(ckv + (b * S + std::min(t0 + 2 * tile, S)) * Dc);
      cur.pe_end = reinterpret_cast<const char*>(kpe + (b * S + std::min(t0 + 2 * tile, S)) * Dr);
      int64_t r = 0;
      if (avx2)  // AVX2: three latents x four heads per pass
        for (; r + 3 <= n; r += 3)
          for (int64_t h = 0; h < H; h += 4)
            scores3x4(ckv + (b * S + t0 + r) * Dc, kpe + (b * S + t0 + r) * Dr, qlb + h * Dc, qpb + h * Dr,
                      Dc, Dr, H, sc, s.data() + r * H + h, cur);
      for (; r < n; ++r) {  // the portable loop: what AVX2 left (or everything it cannot take)
#elif defined(__AVX512F__)
      int64_t r = 0;
      if (Dc % 16 == 0 && Dr % 16 == 0 && H % 4 == 0) {  // AVX-512: two latents x four heads per pass,
        for (; r + 2 <= n; r += 2) {                       // eight 16-wide sums in registers
          const float* row0 = ckv + (b * S + t0 + r) * Dc;
          const float* row1 = row0 + Dc;
          const float* pe0 = kpe + (b * S + t0 + r) * Dr;
          const float* pe1 = pe0 + Dr;
          for (int64_t h = 0; h < H; h += 4) {
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
            __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            // both latents against the four heads' query rows (w, w + n, w + 2n, w + 3n), n elements:
            // once over the latent part (width Dc), once over the RoPE part (width Dr)
            auto add = [&](const float* x0, const float* x1, const float* w, int64_t n) {
              for (int64_t c = 0; c < n; c += 16) {
                const __m512 x = _mm512_loadu_ps(x0 + c), y = _mm512_loadu_ps(x1 + c);
                __m512 q = _mm512_loadu_ps(w + c);
                a00 = _mm512_fmadd_ps(q, x, a00); a10 = _mm512_fmadd_ps(q, y, a10);
                q = _mm512_loadu_ps(w + n + c);
                a01 = _mm512_fmadd_ps(q, x, a01); a11 = _mm512_fmadd_ps(q, y, a11);
                q = _mm512_loadu_ps(w + 2 * n + c);
                a02 = _mm512_fmadd_ps(q, x, a02); a12 = _mm512_fmadd_ps(q, y, a12);
                q = _mm512_loadu_ps(w + 3 * n + c);
                a03 = _mm512_fmadd_ps(q, x, a03); a13 = _mm512_fmadd_ps(q, y, a13);
              }
            };
            add(row0, row1, qlb + h * Dc, Dc);
            add(pe0, pe1, qpb + h * Dr, Dr);
            float* o0 = s.data() + r * H + h;
            float* o1 = o0 + H;
            o0[0] = _mm512_reduce_add_ps(a00) * sc; o0[1] = _mm512_reduce_add_ps(a01) * sc;
            o0[2] = _mm512_reduce_add_ps(a02) * sc; o0[3] = _mm512_reduce_add_ps(a03) * sc;
            o1[0] = _mm512_reduce_add_ps(a10) * sc; o1[1] = _mm512_reduce_add_ps(a11) * sc;
            o1[2] = _mm512_reduce_add_ps(a12) * sc; o1[3] = _mm512_reduce_add_ps(a13) * sc;
          }
        }
      }
      for (; r < n; ++r) {  // the portable loop: what AVX-512 left (or everything without it)
#else
      for (int64_t r = 0; r < n; ++r) {  // the tile's scores, four heads at a time: four independent
#endif
        const float* row = ckv + (b * S + t0 + r) * Dc;  // sums hide the adder's latency, and each latent
        const float* pe = kpe + (b * S + t0 + r) * Dr;   // element is loaded once for the four
        int64_t h = 0;
        for (; h + 4 <= H; h += 4) {
          const float *q0 = qlb + h * Dc, *q1 = q0 + Dc, *q2 = q1 + Dc, *q3 = q2 + Dc;
          const float *p0 = qpb + h * Dr, *p1 = p0 + Dr, *p2 = p1 + Dr, *p3 = p2 + Dr;
          float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
          for (int64_t c = 0; c < Dc; ++c) {
            const float x = row[c];
            d0 += q0[c] * x; d1 += q1[c] * x; d2 += q2[c] * x; d3 += q3[c] * x;
          }
          for (int64_t c = 0; c < Dr; ++c) {
            const float x = pe[c];
            d0 += p0[c] * x; d1 += p1[c] * x; d2 += p2[c] * x; d3 += p3[c] * x;
          }
          float* out_s = s.data() + r * H + h;
          out_s[0] = d0 * sc; out_s[1] = d1 * sc; out_s[2] = d2 * sc; out_s[3] = d3 * sc;
        }
        for (; h < H; ++h) {  // the heads left over when H is not a multiple of 4
          const float* qh = qlb + h * Dc;
          const float* ph = qpb + h * Dr;
          float d = 0.f;
          for (int64_t c = 0; c < Dc; ++c) d += qh[c] * row[c];
          for (int64_t c = 0; c < Dr; ++c) d += ph[c] * pe[c];
          s[r * H + h] = d * sc;
        }
      }
      for (int64_t h = 0; h < H; ++h) {  // raise the running max, rescale what was summed so far
        float tmax = m[h];
        for (int64_t r = 0; r < n; ++r) tmax = std::max(tmax, s[r * H + h]);
        if (tmax > m[h]) {
          const float alpha = std::exp(m[h] - tmax);  // underflows to 0 on the first tile
          l[h] *= alpha;
          float* a = acc + h * Dc;
          for (int64_t c = 0; c < Dc; ++c) a[c] *= alpha;
          m[h] = tmax;
        }
      }
      // add the tile. Its rows are still in the core's L1: the loop runs over the latent's elements
      // outside and the tile's rows inside, so each accumulator element is loaded and stored once per
      // tile rather than once per row (a store is the slowest thing this loop does).
      const float* tile_rows = ckv + (b * S + t0) * Dc;
      int64_t h = 0;
      for (; h + 4 <= H; h += 4) {
        for (int64_t r = 0; r < n; ++r)
          for (int k = 0; k < 4; ++k) {
            w[r * 4 + k] = std::exp(s[r * H + h + k] - m[h + k]);
            l[h + k] += w[r * 4 + k];
          }
#ifdef COURSE_AVX2
        if (avx2) {
          weighted4(tile_rows, w.data(), n, Dc, acc + h * Dc, cur);
          continue;
        }
#endif
        float *a0 = acc + h * Dc, *a1 = a0 + Dc, *a2 = a1 + Dc, *a3 = a2 + Dc;
        const float* wp = w.data();
        int64_t c0 = 0;
#ifdef __AVX512F__
        if (Dc % 32 == 0) {  // AVX-512: 32 floats of each of four heads in eight registers
          for (; c0 < Dc; c0 += 32) {
            float *b0 = a0 + c0, *b1 = a1 + c0, *b2 = a2 + c0, *b3 = a3 + c0;
            __m512 x0 = _mm512_loadu_ps(b0), y0 = _mm512_loadu_ps(b0 + 16);
            __m512 x1 = _mm512_loadu_ps(b1), y1 = _mm512_loadu_ps(b1 + 16);
            __m512 x2 = _mm512_loadu_ps(b2), y2 = _mm512_loadu_ps(b2 + 16);
            __m512 x3 = _mm512_loadu_ps(b3), y3 = _mm512_loadu_ps(b3 + 16);
            for (int64_t r = 0; r < n; ++r) {
              const float* v = tile_rows + r * Dc + c0;
              const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
              __m512 w = _mm512_set1_ps(wp[r * 4]);
              x0 = _mm512_fmadd_ps(w, v0, x0); y0 = _mm512_fmadd_ps(w, v1, y0);
              w = _mm512_set1_ps(wp[r * 4 + 1]);
              x1 = _mm512_fmadd_ps(w, v0, x1); y1 = _mm512_fmadd_ps(w, v1, y1);
              w = _mm512_set1_ps(wp[r * 4 + 2]);
              x2 = _mm512_fmadd_ps(w, v0, x2); y2 = _mm512_fmadd_ps(w, v1, y2);
              w = _mm512_set1_ps(wp[r * 4 + 3]);
              x3 = _mm512_fmadd_ps(w, v0, x3); y3 = _mm512_fmadd_ps(w, v1, y3);
            }
            _mm512_storeu_ps(b0, x0); _mm512_storeu_ps(b0 + 16, y0);
            _mm512_storeu_ps(b1, x1); _mm512_storeu_ps(b1 + 16, y1);
            _mm512_storeu_ps(b2, x2); _mm512_storeu_ps(b2 + 16, y2);
            _mm512_storeu_ps(b3, x3); _mm512_storeu_ps(b3 + 16, y3);
          }
        }
#endif
        for (; c0 + 16 <= Dc; c0 += 16) {  // 16 floats (one AVX-512 register) per head in registers
          float x0[16], x1[16], x2[16], x3[16];
          for (int j = 0; j < 16; ++j) {
            x0[j] = a0[c0 + j]; x1[j] = a1[c0 + j]; x2[j] = a2[c0 + j]; x3[j] = a3[c0 + j];
          }
          for (int64_t r = 0; r < n; ++r) {
            const float* v = tile_rows + r * Dc + c0;
            const float w0 = wp[r * 4], w1 = wp[r * 4 + 1], w2 = wp[r * 4 + 2], w3 = wp[r * 4 + 3];
            for (int j = 0; j < 16; ++j) {
              x0[j] += w0 * v[j]; x1[j] += w1 * v[j]; x2[j] += w2 * v[j]; x3[j] += w3 * v[j];
            }
          }
          for (int j = 0; j < 16; ++j) {
            a0[c0 + j] = x0[j]; a1[c0 + j] = x1[j]; a2[c0 + j] = x2[j]; a3[c0 + j] = x3[j];
          }
        }
        for (; c0 < Dc; ++c0)  // a latent width that is not a multiple of 16
          for (int64_t r = 0; r < n; ++r) {
            const float v = tile_rows[r * Dc + c0];
            a0[c0] += wp[r * 4] * v; a1[c0] += wp[r * 4 + 1] * v;
            a2[c0] += wp[r * 4 + 2] * v; a3[c0] += wp[r * 4 + 3] * v;
          }
      }
      for (; h < H; ++h) {  // the heads left over when H is not a multiple of 4
        float* a = acc + h * Dc;
        for (int64_t r = 0; r < n; ++r) {
          const float p = std::exp(s[r * H + h] - m[h]);
          l[h] += p;
          for (int64_t c = 0; c < Dc; ++c) a[c] += p * tile_rows[r * Dc + c];
        }
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      float* a = acc + h * Dc;
      const float inv = 1.f / l[h];
      for (int64_t c = 0; c < Dc; ++c) a[c] *= inv;
    }
  }
  return out.view({B, H, 1, Dc});
}

// Which inner loops this build compiled in.
std::string vector_path() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(COURSE_AVX2)
  return "avx2";
#else
  return "portable";
#endif
}
"""
_CPP_DECL = ("torch::Tensor fused_decode(torch::Tensor q_lat, torch::Tensor q_pe, torch::Tensor c_kv, "
             "torch::Tensor k_pe, double scale, int64_t tile);\nstd::string vector_path();")
_extension = None  # the compiled module, or the reason it could not be built (a string)
_variants: dict = {}  # the same source built with fewer instruction sets (tests compare the paths)
FLAGS = ["-O3", "-march=native", "-ffast-math"]
# x86 only: each path's build, by the instruction sets switched off ("native" is the default build)
VARIANT_FLAGS = {"avx2": ["-mno-avx512f"], "portable": ["-mno-avx512f", "-mno-avx2", "-mno-fma"]}


def _compile(name: str, flags: list[str]):
    """The loop compiled under ``name`` (torch caches the build on disk between processes), or why not."""
    try:
        from torch.utils.cpp_extension import load_inline

        return load_inline(name, cpp_sources=[_CPP_DECL, _SOURCE], functions=["fused_decode", "vector_path"],
                           verbose=False, extra_cflags=flags)
    except Exception as err:  # no compiler, no ninja, no headers: the torch fallback serves
        last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        return f"{type(err).__name__}: {last}"


def _build():
    """Compile the C++ loop once per process. ``-march=native`` picks its inner loops: the AVX-512
    intrinsics where the CPU has AVX-512 (``__AVX512F__``), else the AVX2 ones where it has AVX2 and FMA,
    else the portable loops."""
    global _extension
    if _extension is None:
        _extension = _compile("course_fused_mla", FLAGS)
    return _extension


def _build_variant(variant: str):
    """The same source with instruction sets switched off (x86 only; ``VARIANT_FLAGS``): ``"avx2"`` runs
    the AVX2 loops on an AVX-512 CPU, ``"portable"`` the portable loops anywhere, so a test can hold every
    path equal on a machine that would otherwise only ever run one of them."""
    if variant not in VARIANT_FLAGS:
        raise ValueError(f"_build_variant: variant must be one of {sorted(VARIANT_FLAGS)}, got {variant!r}")
    if variant not in _variants:
        _variants[variant] = _compile(f"course_fused_mla_{variant}", FLAGS + VARIANT_FLAGS[variant])
    return _variants[variant]


def backend() -> str:
    """``"c++"`` when the compiled loop is available (and not switched off by ``COURSE_FUSED_MLA=torch``),
    else ``"torch"``."""
    if os.environ.get(BACKEND_VAR, "").strip().lower() == "torch":
        return "torch"
    return "c++" if not isinstance(_build(), str) else "torch"


def vector_path() -> str | None:
    """The compiled loop's inner loops on this CPU: ``"avx512"``, ``"avx2"`` or ``"portable"`` (``None``
    where the torch fallback serves)."""
    return _build().vector_path() if backend() == "c++" else None


def why_not_cpp() -> str | None:
    """Why the C++ loop is not in use (``None`` when it is)."""
    if os.environ.get(BACKEND_VAR, "").strip().lower() == "torch":
        return f"{BACKEND_VAR}=torch"
    ext = _build()
    return ext if isinstance(ext, str) else None


def online_softmax_blocks(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor,
                          scale: float, block: int = BLOCK) -> torch.Tensor:
    """The single-pass algorithm in readable torch, ``block`` latents at a time (the fallback)."""
    check_int("block", block, min_value=1, where="online_softmax_blocks")
    B, H, _, Dc = q_lat.shape
    ql = q_lat.reshape(B, H, Dc).transpose(1, 2)  # (B, Dc, H)
    qp = q_pe.reshape(B, H, -1).transpose(1, 2)  # (B, Dr, H)
    m = q_lat.new_full((B, 1, H), -math.inf)  # running max per head
    l = q_lat.new_zeros((B, 1, H))  # running sum of exp(score - m)
    acc = q_lat.new_zeros((B, H, Dc))  # running weighted sum of latents
    for start in range(0, c_kv.shape[1], block):
        c, p = c_kv[:, start:start + block], k_pe[:, start:start + block]  # (B, n, Dc), (B, n, Dr)
        s = (c @ ql + p @ qp) * scale  # (B, n, H): this block's scores
        m_new = torch.maximum(m, s.amax(dim=1, keepdim=True))  # (B, 1, H)
        alpha = torch.exp(m - m_new)  # rescales what was summed under the old max (0 on the first block)
        w = torch.exp(s - m_new)  # (B, n, H)
        l = l * alpha + w.sum(dim=1, keepdim=True)
        acc = acc * alpha.transpose(1, 2) + w.transpose(1, 2) @ c  # (B, H, Dc)
        m = m_new
    return (acc / l.transpose(1, 2)).view(B, H, 1, Dc)


def absorbed_attention_fused(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor,
                             k_pe: torch.Tensor, scale: float) -> torch.Tensor:
    """Absorbed attention over the latents in one pass (decode); the same signature and result as
    ``helpers.mla.absorbed_attention_explicit``, which serves every call that is not a decode step."""
    from .mla import absorbed_attention_explicit

    if q_lat.shape[2] != 1:
        return absorbed_attention_explicit(q_lat, q_pe, c_kv, k_pe, scale)
    tensors = (q_lat, q_pe, c_kv, k_pe)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)  # the loop has no backward
    cpp = (not needs_grad and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
           and backend() == "c++")
    if cpp:
        B, H, _, Dc = q_lat.shape
        ql, qp = q_lat.reshape(B, H, Dc).contiguous(), q_pe.reshape(B, H, -1).contiguous()
        return _build().fused_decode(ql, qp, c_kv.contiguous(), k_pe.contiguous(), float(scale), TILE)
    return online_softmax_blocks(q_lat, q_pe, c_kv, k_pe, scale)
