// LeNet-BN's first block in training, fused into one forward and one backward XLA FFI handler (jaxcnn.first_block):
// conv (one input channel, valid, stride 1) + bias, BatchNorm with the batch's statistics, Scale, 2x2/2 max pooling
// (each window's first maximum, as Caffe), ReLU; float32; OH = H - K + 1 and OW = W - K + 1 even, O <= 32.
//   first_block_forward:  x (N, H, W, 1), w (K, K, 1, O), b, gamma, beta (O) -> z (N, OH/2, OW/2, O),
//                         y (N, OH, OW, 32) the convolution's output in 32 lanes (kept for the backward),
//                         stats (2, O): the batch's mean and biased variance
//   first_block_backward: x, y, stats, gamma, beta, dz -> dw (K, K, 1, O), db, dgamma, dbeta (O)
// Every per-channel loop runs over 32 lanes (parameters padded with zeros), two 512-bit vectors, so that each
// output pixel's accumulators stay in registers. The batch is split into `threads` parts run on XLA's intra-op
// thread pool; channel sums are per part, in double, then added in a fixed order.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
constexpr int LANES = 32;

// How many parts a batch of N images is split into on `threads` threads
static int64_t parts_of(int64_t threads, int64_t N) { return std::max<int64_t>(1, std::min(threads, N)); }

// Runs fn(p, n0, n1) for each part p of the batch, images [n0, n1), and returns when all are done. Each part is
// claimed once, by this thread or by a task on XLA's intra-op pool: this thread runs every part no task has
// claimed, so nothing waits on a pool whose threads are all busy (a task that starts late finds no part left).
template <typename F>
static void parallel(ffi::ThreadPool& pool, int64_t parts, int64_t N, F fn) {
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex m;
    std::condition_variable cv;
  };
  auto shared = std::make_shared<Shared>();
  auto run = [shared, parts, N, f = &fn] {  // f is used only while a claimed part keeps the caller waiting
    for (int64_t p; (p = shared->next.fetch_add(1)) < parts;) {
      (*f)(p, N * p / parts, N * (p + 1) / parts);
      if (shared->done.fetch_add(1) + 1 == parts) {
        std::lock_guard<std::mutex> lock(shared->m);
        shared->cv.notify_all();
      }
    }
  };
  for (int64_t p = 1; p < parts; ++p) pool.Schedule(decltype(run)(run));  // a copy each
  run();
  std::unique_lock<std::mutex> lock(shared->m);
  shared->cv.wait(lock, [&] { return shared->done.load() == parts; });
}

// out[i] = the sum over parts p of v[p * stride + at + i], for i < count
template <typename T, typename U>
static void sum_parts(const std::vector<T>& v, int64_t parts, int64_t stride, int64_t at, int64_t count, U* out) {
  for (int64_t i = 0; i < count; ++i) {
    T sum = 0;
    for (int64_t p = 0; p < parts; ++p) sum += v[p * stride + at + i];
    out[i] = U(sum);
  }
}

// w (KK taps, O channels) with each tap's channels padded to LANES
static std::vector<float> padded_taps(const float* w, int64_t KK, int64_t O) {
  std::vector<float> wp(KK * LANES, 0.f);
  for (int64_t t = 0; t < KK; ++t) std::copy_n(w + t * O, O, wp.data() + t * LANES);
  return wp;
}

// dw[kh, kw] (LANES each) += sum over (oh, ow) of x[oh + kh, ow + kw] * dy[oh, ow] for one image: x (H, W),
// dy (OH, OW, LANES). KT > 0 fixes K = KT at compile time, so that a row's K accumulators stay in registers.
template <int KT>
static void weight_grad_rows(const float* x, const float* dy, float* dw, int64_t OH, int64_t OW, int64_t W,
                             int64_t K = KT) {
  constexpr int KMAX = KT > 0 ? KT : 1;
  const int64_t kn = KT > 0 ? KT : 1;  // accumulators per pass: the whole row of taps, or one
  for (int64_t kh = 0; kh < K; ++kh)
    for (int64_t kw0 = 0; kw0 < K; kw0 += kn) {
      alignas(64) float acc[KMAX][LANES];
      std::memcpy(acc, dw + (kh * K + kw0) * LANES, sizeof(acc));
      for (int64_t oh = 0; oh < OH; ++oh) {
        const float* xr = x + (oh + kh) * W + kw0;
        const float* dyr = dy + oh * OW * LANES;
        for (int64_t ow = 0; ow < OW; ++ow)
          for (int k = 0; k < KMAX; ++k) {
            const float v = xr[ow + k];
            for (int o = 0; o < LANES; ++o) acc[k][o] += v * dyr[ow * LANES + o];
          }
      }
      std::memcpy(dw + (kh * K + kw0) * LANES, acc, sizeof(acc));
    }
}

static void weight_grad_image(const float* x, const float* dy, float* dw, int64_t OH, int64_t OW, int64_t W,
                              int64_t K) {
  if (K == 5)  // LeNet's
    weight_grad_rows<5>(x, dy, dw, OH, OW, W);
  else
    weight_grad_rows<0>(x, dy, dw, OH, OW, W, K);
}

// BLOCK output columns of row oh from ow0 of image n: their channels accumulated in registers, written to y (O
// per position), added to sums (see images).
template <int BLOCK>
static void columns(const float* x, const float* wp, const float* bp, float* y, int64_t n, int64_t oh, int64_t ow0,
                    int64_t H, int64_t W, int64_t K, int64_t O, float* sums) {
  const int64_t OH = H - K + 1, OW = W - K + 1;
  alignas(64) float acc[BLOCK][LANES];
  for (int b = 0; b < BLOCK; ++b) std::memcpy(acc[b], bp, sizeof(acc[b]));
  for (int64_t kh = 0; kh < K; ++kh) {
    const float* xr = x + (n * H + oh + kh) * W + ow0;
    for (int64_t kw = 0; kw < K; ++kw) {
      const float* wr = wp + (kh * K + kw) * LANES;
      for (int b = 0; b < BLOCK; ++b) {
        const float v = xr[b + kw];
        for (int o = 0; o < LANES; ++o) acc[b][o] += v * wr[o];
      }
    }
  }
  float* yr = y + ((n * OH + oh) * OW + ow0) * O;
  for (int b = 0; b < BLOCK; ++b) std::memcpy(yr + b * O, acc[b], O * sizeof(float));
  for (int b = 0; b < BLOCK; ++b)
    for (int o = 0; o < LANES; ++o) sums[o] += acc[b][o], sums[LANES + o] += acc[b][o] * acc[b][o];
}

// The convolution of images [n0, n1) into y (LANES per position); sums (2, LANES) adds each output's channels
// and their squares.
static void images(const float* x, const float* wp, const float* bp, float* y, int64_t n0, int64_t n1, int64_t H,
                   int64_t W, int64_t K, int64_t O, float* sums) {
  const int64_t OH = H - K + 1, OW = W - K + 1;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t oh = 0; oh < OH; ++oh) {
      int64_t ow = 0;
      for (; ow + 4 <= OW; ow += 4) columns<4>(x, wp, bp, y, n, oh, ow, H, W, K, O, sums);
      for (; ow < OW; ++ow) columns<1>(x, wp, bp, y, n, oh, ow, H, W, K, O, sums);
    }
}

// The block's geometry: the convolution's output OH x OW, pooled PH x PW.
struct Block {
  int64_t N, H, W, K, O, OH, OW, PH, PW;
  Block(int64_t N, int64_t H, int64_t W, int64_t K, int64_t O)
      : N(N), H(H), W(W), K(K), O(O), OH(H - K + 1), OW(W - K + 1), PH(OH / 2), PW(OW / 2) {}
  bool valid() const { return O <= LANES && H >= K && W >= K && OH % 2 == 0 && OW % 2 == 0; }
  // the offsets in y (LANES per position) of window (ph, pw)'s four taps, in the window's row-major order
  void taps(int64_t n, int64_t ph, int64_t pw, int64_t t[4]) const {
    const int64_t r = (n * OH + 2 * ph) * OW + 2 * pw;
    t[0] = r * LANES, t[1] = (r + 1) * LANES, t[2] = (r + OW) * LANES, t[3] = (r + OW + 1) * LANES;
  }
};

static ffi::Error FirstBlockForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                                    ffi::Buffer<ffi::F32> b, ffi::Buffer<ffi::F32> gamma, ffi::Buffer<ffi::F32> beta,
                                    ffi::ResultBuffer<ffi::F32> z, ffi::ResultBuffer<ffi::F32> y,
                                    ffi::ResultBuffer<ffi::F32> stats, float eps, int64_t threads) {
  const auto xd = x.dimensions(), wd = w.dimensions();
  const Block g(xd[0], xd[1], xd[2], wd[0], wd[3]);
  if (xd.size() != 4 || xd[3] != 1 || wd.size() != 4 || wd[1] != g.K || wd[2] != 1 || !g.valid())
    return ffi::Error::InvalidArgument("first_block_forward: x (N, H, W, 1), w (K, K, 1, O <= 32), even OH, OW");
  const std::vector<float> wp = padded_taps(w.typed_data(), g.K * g.K, g.O), bp = padded_taps(b.typed_data(), 1, g.O);
  const int64_t parts = parts_of(threads, g.N), O = g.O, HW = g.OH * g.OW;
  std::vector<double> sums(parts * 2 * LANES, 0.0);
  float* yd = y->typed_data();
  parallel(pool, parts, g.N, [&](int64_t p, int64_t n0, int64_t n1) {
    double* s = sums.data() + p * 2 * LANES;
    for (int64_t n = n0; n < n1; ++n) {
      alignas(64) float sum[2 * LANES] = {};  // an image's in float, the part's in double
      images(x.typed_data(), wp.data(), bp.data(), yd, n, n + 1, g.H, g.W, g.K, LANES, sum);
      for (int o = 0; o < 2 * LANES; ++o) s[o] += sum[o];
    }
  });
  const double M = double(g.N * HW);
  double s[LANES], q[LANES];
  sum_parts(sums, parts, 2 * LANES, 0, LANES, s);
  sum_parts(sums, parts, 2 * LANES, LANES, LANES, q);
  alignas(64) float a[LANES] = {}, c[LANES] = {};
  float* st = stats->typed_data();
  for (int64_t o = 0; o < O; ++o) {
    const double mean = s[o] / M, var = std::max(q[o] / M - mean * mean, 0.0);
    st[o] = float(mean), st[O + o] = float(var);
    a[o] = gamma.typed_data()[o] / std::sqrt(float(var) + eps), c[o] = beta.typed_data()[o] - float(mean) * a[o];
  }
  float* zd = z->typed_data();
  parallel(pool, parts, g.N, [&](int64_t, int64_t n0, int64_t n1) {
    int64_t t[4];
    alignas(64) float zt[LANES];
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t ph = 0; ph < g.PH; ++ph)
        for (int64_t pw = 0; pw < g.PW; ++pw) {
          g.taps(n, ph, pw, t);
          for (int o = 0; o < LANES; ++o) {
            float m = yd[t[0] + o] * a[o] + c[o];
            for (int k = 1; k < 4; ++k) m = std::max(m, yd[t[k] + o] * a[o] + c[o]);
            zt[o] = std::max(m, 0.f);
          }
          std::memcpy(zd + ((n * g.PH + ph) * g.PW + pw) * O, zt, O * sizeof(float));
        }
  });
  return ffi::Error::Success();
}

// The backward's view of one window: its four taps' normalised values xh, and each tap's share of the window's
// gradient dz (the first maximum's, if it passed the ReLU; 0 elsewhere), lane by lane.
struct Window {
  alignas(64) float xh[4][LANES], ds[4][LANES];
};

static void window(const float* y, const int64_t t[4], const float* dz, const float* mean, const float* r,
                   const float* a, const float* c, Window& out) {
  for (int o = 0; o < LANES; ++o) {
    float v[4];
    for (int k = 0; k < 4; ++k) v[k] = y[t[k] + o] * a[o] + c[o], out.xh[k][o] = (y[t[k] + o] - mean[o]) * r[o];
    // tap k holds the first maximum: above the taps before it, at least the taps after it (bitwise: vectorised)
    const bool f0 = (v[0] >= v[1]) & (v[0] >= v[2]) & (v[0] >= v[3]);
    const bool f1 = (v[1] > v[0]) & (v[1] >= v[2]) & (v[1] >= v[3]);
    const bool f2 = (v[2] > v[0]) & (v[2] > v[1]) & (v[2] >= v[3]);
    const bool f3 = (v[3] > v[0]) & (v[3] > v[1]) & (v[3] > v[2]);
    const float m = std::max(std::max(v[0], v[1]), std::max(v[2], v[3]));
    const float d = m > 0.f ? dz[o] : 0.f;
    out.ds[0][o] = f0 ? d : 0.f, out.ds[1][o] = f1 ? d : 0.f, out.ds[2][o] = f2 ? d : 0.f, out.ds[3][o] = f3 ? d : 0.f;
  }
}

static ffi::Error FirstBlockBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> y,
                                     ffi::Buffer<ffi::F32> stats, ffi::Buffer<ffi::F32> gamma,
                                     ffi::Buffer<ffi::F32> beta, ffi::Buffer<ffi::F32> dz,
                                     ffi::ResultBuffer<ffi::F32> dw, ffi::ResultBuffer<ffi::F32> db,
                                     ffi::ResultBuffer<ffi::F32> dgamma, ffi::ResultBuffer<ffi::F32> dbeta, float eps,
                                     int64_t threads) {
  const auto xd = x.dimensions(), yd = y.dimensions(), zd = dz.dimensions();
  const Block g(xd[0], xd[1], xd[2], xd[1] - yd[1] + 1, zd[3]);
  if (xd.size() != 4 || xd[3] != 1 || yd.size() != 4 || yd[0] != g.N || yd[3] != LANES ||
      xd[2] - yd[2] + 1 != g.K || zd[0] != g.N || zd[1] != g.PH || zd[2] != g.PW || !g.valid())
    return ffi::Error::InvalidArgument("first_block_backward: x (N, H, W, 1), y (N, OH, OW, 32), dz (N, OH/2, OW/2, "
                                       "O <= 32), even OH, OW");
  const int64_t parts = parts_of(threads, g.N), O = g.O, KK = g.K * g.K, HW = g.OH * g.OW;
  const float* yv = y.typed_data();
  alignas(64) float mean[LANES] = {}, r[LANES] = {}, a[LANES] = {}, c[LANES] = {};
  for (int64_t o = 0; o < O; ++o) {
    mean[o] = stats.typed_data()[o], r[o] = 1.f / std::sqrt(stats.typed_data()[O + o] + eps);
    a[o] = gamma.typed_data()[o] * r[o], c[o] = beta.typed_data()[o] - mean[o] * a[o];
  }
  // visit(n, t, window) for each window of images [n0, n1)
  auto windows = [&](int64_t n0, int64_t n1, auto visit) {
    int64_t t[4];
    alignas(64) float dzp[LANES] = {};
    Window win;
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t ph = 0; ph < g.PH; ++ph)
        for (int64_t pw = 0; pw < g.PW; ++pw) {
          g.taps(n, ph, pw, t);
          std::memcpy(dzp, dz.typed_data() + ((n * g.PH + ph) * g.PW + pw) * O, O * sizeof(float));
          window(yv, t, dzp, mean, r, a, c, win);
          visit(n, t, win);
        }
  };
  // 1: dbeta = the sum of ds, dgamma = the sum of ds * xh
  std::vector<double> sums(parts * 2 * LANES, 0.0);
  parallel(pool, parts, g.N, [&](int64_t p, int64_t n0, int64_t n1) {
    alignas(64) float s[LANES] = {}, q[LANES] = {};
    windows(n0, n1, [&](int64_t, const int64_t*, const Window& w) {
      for (int k = 0; k < 4; ++k)
        for (int o = 0; o < LANES; ++o) s[o] += w.ds[k][o], q[o] += w.ds[k][o] * w.xh[k][o];
    });
    for (int o = 0; o < LANES; ++o) sums[p * 2 * LANES + o] = s[o], sums[p * 2 * LANES + LANES + o] = q[o];
  });
  const double M = double(g.N * HW);
  double s[LANES], q[LANES];
  sum_parts(sums, parts, 2 * LANES, 0, LANES, s);
  sum_parts(sums, parts, 2 * LANES, LANES, LANES, q);
  alignas(64) float k2[LANES] = {}, k3[LANES] = {};  // dy = a ds - k2 - k3 xh
  for (int64_t o = 0; o < O; ++o) {
    dbeta->typed_data()[o] = float(s[o]), dgamma->typed_data()[o] = float(q[o]);
    k2[o] = float(a[o] * s[o] / M), k3[o] = float(a[o] * q[o] / M);
  }
  // 2: dy of each image into a scratch map (LANES per position), then dw and db from it
  std::vector<float> partial(parts * (KK + 1) * LANES, 0.f);
  parallel(pool, parts, g.N, [&](int64_t p, int64_t n0, int64_t n1) {
    std::vector<float> dyv(HW * LANES);
    float* dwp = partial.data() + p * (KK + 1) * LANES;
    alignas(64) float dbp[LANES] = {};
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t base = n * HW * LANES;
      windows(n, n + 1, [&](int64_t, const int64_t* t, const Window& w) {
        for (int k = 0; k < 4; ++k) {
          float* d = dyv.data() + (t[k] - base);
          for (int o = 0; o < LANES; ++o) {
            d[o] = a[o] * w.ds[k][o] - k2[o] - k3[o] * w.xh[k][o];
            dbp[o] += d[o];
          }
        }
      });
      weight_grad_image(x.typed_data() + n * g.H * g.W, dyv.data(), dwp, g.OH, g.OW, g.W, g.K);
    }
    std::memcpy(dwp + KK * LANES, dbp, sizeof(dbp));
  });
  for (int64_t t = 0; t < KK; ++t)
    sum_parts(partial, parts, (KK + 1) * LANES, t * LANES, O, dw->typed_data() + t * O);
  sum_parts(partial, parts, (KK + 1) * LANES, KK * LANES, O, db->typed_data());
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(first_block_forward, FirstBlockForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(first_block_backward, FirstBlockBackward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("threads"));
