// The executor's scratch arena: a session's temporaries come from its KVCache's arena, sized on
// the first call, so that later calls neither grow it nor touch the heap. This binary replaces
// the global operator new to count heap allocations, which is why it is a test folder of its own.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "api/causal_lm_impl.h"
#include "common/test_util.h"
#include "gptq/gptq.h"
#include "synth/synth.h"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

// GCC (in the sanitizer build) inlines these replacements into gtest's `new TestClass` and then
// sees std::free on memory from operator new; here they are one allocator, malloc/free.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// Every form of operator new ends here or in the aligned one below, the nothrow forms included
// (std::stable_sort's temporary buffer uses one): a form left to the runtime would pair its
// allocator with the std::free below, which AddressSanitizer reports as a mismatch.
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return ::operator new(n); }
void* operator new(size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const size_t al = static_cast<size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) { return ::operator new(n, a); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return ::operator new(n, t); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n, a);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept {
  return ::operator new(n, a, t);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace gptq {
namespace {

struct Run {
  std::vector<float> logits;       // prefill's last row, then each decode step's
  std::vector<int64_t> step_allocs;  // heap allocations of each decode step
  size_t capacity_after_first = 0, capacity_at_end = 0;
  int64_t growths = 0;
};

// Prefill of `prompt` tokens, then `steps` greedy decode steps, in one cache.
Run run(const CausalLM& m, int64_t prompt, int64_t steps) {
  const auto& impl = api::impl(m);
  const model::Decoder& dec = *impl.decoder;
  const int64_t V = impl.cfg.vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(prompt));
  for (int64_t i = 0; i < prompt; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 37 + 11) % V);
  auto cache = dec.make_cache(prompt + steps, prompt);
  Run r;
  std::vector<float> out(static_cast<size_t>(V));
  dec.forward(impl.weights, ids.data(), prompt, cache, 1, out.data());
  r.capacity_after_first = cache.scratch().capacity();
  r.logits = out;
  for (int64_t s = 0; s < steps; ++s) {
    int32_t next = 0;
    for (int64_t j = 1; j < V; ++j) {
      if (out[static_cast<size_t>(j)] > out[static_cast<size_t>(next)]) next = static_cast<int32_t>(j);
    }
    const int64_t before = g_allocations.load();
    dec.forward(impl.weights, &next, 1, cache, 1, out.data());
    r.step_allocs.push_back(g_allocations.load() - before);
    r.logits.insert(r.logits.end(), out.begin(), out.end());
  }
  r.capacity_at_end = cache.scratch().capacity();
  r.growths = cache.scratch().growths();
  EXPECT_LE(cache.scratch().high_water(), cache.scratch().capacity());
  EXPECT_EQ(cache.scratch().used(), 0u);  // everything taken was released
  return r;
}

void expect_no_growth_and_no_allocations(const CausalLM& m, const std::string& what) {
  const Run a = run(m, 24, 12);
  EXPECT_EQ(a.growths, 1) << what;  // sized once, on the first call
  EXPECT_EQ(a.capacity_at_end, a.capacity_after_first) << what;
  for (size_t s = 0; s < a.step_allocs.size(); ++s) EXPECT_EQ(a.step_allocs[s], 0) << what << ", step " << s;
  // A second session: the same bits (no state leaks through the arena's reused memory).
  const Run b = run(m, 24, 12);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  EXPECT_EQ(a.logits, b.logits) << what;
}

CalibrationOptions calib() {
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 8;
  c.seqlen = 64;
  return c;
}

// The counter sees what the library allocates (a KVCache's buffers, a vector's storage).
TEST(ScratchArena, CounterSeesAllocations) {
  const int64_t before = g_allocations.load();
  std::vector<float> v(1000);
  v[0] = 1;
  EXPECT_GE(g_allocations.load() - before, 1);
  const auto m = CausalLM::from_pretrained(test::stories_dir());
  const int64_t mid = g_allocations.load();
  auto cache = api::impl(m).decoder->make_cache(16);
  EXPECT_GE(g_allocations.load() - mid, 2);  // keys and values
}

TEST(ScratchArena, DenseStories260k) {
  expect_no_growth_and_no_allocations(CausalLM::from_pretrained(test::stories_dir()), "stories260k fp32");
}

// Every linear of the tiny shape (sizes multiples of 32) runs on the quantized kernels: 4-bit
// (the int16 decode path), 3-bit with act-order (the gathered inputs and the 3-bit decode path).
TEST(ScratchArena, QuantizedKernels) {
  test::TempDir tmp;
  SynthOptions so;
  so.out = tmp.path() / "tiny";
  so.shape = "tiny";
  so.dtype = "fp32";
  synthesize_model(so);
  for (int variant = 0; variant < 2; ++variant) {
    QuantizeConfig q;
    q.bits = variant == 0 ? 4 : 3;
    q.group_size = 32;
    q.desc_act = variant == 1;
    const auto out = tmp.path() / (variant == 0 ? "q4" : "q3-act");
    quantize_model(so.out, out, q, calib());
    const auto m = CausalLM::from_pretrained(out);
    ASSERT_TRUE(api::impl(m).weights.blocks[0].at(arch::Role::kQ).is_quantized());
    expect_no_growth_and_no_allocations(m, out.filename().string());
  }
}

TEST(ScratchArena, Dense16) {
  test::TempDir tmp;
  SynthOptions so;
  so.out = tmp.path() / "tiny16";
  so.shape = "tiny";
  so.dtype = "bf16";
  synthesize_model(so);
  LoadOptions lo;
  expect_no_growth_and_no_allocations(CausalLM::from_pretrained(so.out, lo), "tiny bf16");
}

// A call longer than the arena was sized for grows it (once), and stays correct.
TEST(ScratchArena, LongerCallGrows) {
  const auto m = CausalLM::from_pretrained(test::stories_dir());
  const auto& impl = api::impl(m);
  const int64_t V = impl.cfg.vocab_size;
  std::vector<int32_t> ids(40);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 13 + 5) % V);
  std::vector<float> want(static_cast<size_t>(V)), got(static_cast<size_t>(V));
  auto fresh = impl.decoder->make_cache(40);
  impl.decoder->forward(impl.weights, ids.data(), 40, fresh, 1, want.data());
  auto cache = impl.decoder->make_cache(40, 1);
  impl.decoder->forward(impl.weights, ids.data(), 40, cache, 1, got.data());
  EXPECT_EQ(cache.scratch().growths(), 2);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace gptq
