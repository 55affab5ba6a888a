// gptq/runtime.h: the interrupt check polled by long calls (what the Python package's Ctrl-C
// uses), what each interrupted call leaves behind, the public thread count, and the config check.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/test_util.h"
#include "gptq/gptq.h"

namespace gptq {
namespace {

// A check that answers "stop" on its n-th poll (1-based) and counts every poll.
struct StopAt {
  int stop_at;
  std::shared_ptr<int> polls = std::make_shared<int>(0);
  InterruptCheck check() const {
    return [n = stop_at, p = polls]() { return ++*p >= n; };
  }
};

ErrorKind kind_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "expected a gptq::Error";
  return ErrorKind::kIo;
}

std::string eval_text() {
  return test::read_file(test::data_dir() / "text" / "tinystories-eval.txt").substr(0, 20000);
}

std::vector<std::string> calib_texts() {
  const std::string text = test::read_file(test::data_dir() / "text" / "tinystories-calib.txt");
  std::vector<std::string> v;
  for (int i = 0; i < 6; ++i) v.push_back(text.substr(i * 5000, 1200));
  return v;
}

TEST(InterruptCheck, ScopesNestAndAreRestored) {
  EXPECT_NO_THROW(check_interrupt());  // none installed
  {
    ScopedInterruptCheck outer([] { return true; });
    EXPECT_EQ(kind_of([] { check_interrupt(); }), ErrorKind::kInterrupted);
    {
      ScopedInterruptCheck inner([] { return false; });
      EXPECT_NO_THROW(check_interrupt());
    }
    EXPECT_EQ(kind_of([] { check_interrupt(); }), ErrorKind::kInterrupted);
  }
  EXPECT_NO_THROW(check_interrupt());
}

TEST(InterruptCheck, BelongsToTheThreadThatInstalledIt) {
  ScopedInterruptCheck stop([] { return true; });
  std::atomic<bool> threw{false};
  std::thread other([&] {
    try {
      check_interrupt();
    } catch (const Error&) {
      threw = true;
    }
  });
  other.join();
  EXPECT_FALSE(threw);
  EXPECT_THROW(check_interrupt(), Error);
}

TEST(InterruptCheck, PerplexityPollsEachWindowAndChangesNothing) {
  auto m = CausalLM::from_pretrained(test::stories_dir());
  PerplexityOptions po;
  po.ctx = 256;
  po.max_windows = 8;
  const auto full = m.perplexity(eval_text(), po);
  ASSERT_EQ(full.windows, 8);
  {
    StopAt s{9};  // never reached: one poll per window
    ScopedInterruptCheck g(s.check());
    EXPECT_DOUBLE_EQ(m.perplexity(eval_text(), po).ppl, full.ppl);
    EXPECT_EQ(*s.polls, 8);
  }
  {
    StopAt s{3};
    ScopedInterruptCheck g(s.check());
    EXPECT_EQ(kind_of([&] { m.perplexity(eval_text(), po); }), ErrorKind::kInterrupted);
    EXPECT_EQ(*s.polls, 3);
  }
  EXPECT_DOUBLE_EQ(m.perplexity(eval_text(), po).ppl, full.ppl);
}

TEST(InterruptCheck, GeneratePollsEachToken) {
  auto m = CausalLM::from_pretrained(test::stories_dir());
  GenerateOptions go;
  go.n_predict = 10;
  go.temperature = 0;
  go.ignore_eos = true;
  StopAt s{1000};
  {
    ScopedInterruptCheck g(s.check());
    EXPECT_EQ(m.generate("Once upon a time", go).new_ids.size(), 10u);
  }
  EXPECT_EQ(*s.polls, 10);
  StopAt stop{4};
  ScopedInterruptCheck g(stop.check());
  EXPECT_EQ(kind_of([&] { m.generate("Once upon a time", go); }), ErrorKind::kInterrupted);
}

TEST(InterruptCheck, LoadingStops) {
  StopAt s{2};
  ScopedInterruptCheck g(s.check());
  EXPECT_EQ(kind_of([] { CausalLM::from_pretrained(test::stories_dir()); }),
            ErrorKind::kInterrupted);
}

TEST(InterruptCheck, InterruptedQuantizeLeavesTheModelUnusable) {
  QuantizeConfig q;
  q.group_size = 32;
  auto m = CausalLM::from_pretrained(test::stories_dir(), q);
  {
    // Polls: each sample in each calibration pass and each linear; 40 falls inside layer 1 or 2.
    StopAt s{40};
    ScopedInterruptCheck g(s.check());
    EXPECT_EQ(kind_of([&] { m.quantize(calib_texts()); }), ErrorKind::kInterrupted);
  }
  const std::vector<int32_t> ids = {1, 403, 407};
  for (const auto& call : std::vector<std::function<void()>>{
           [&] { m.logits(ids); }, [&] { m.quantize(calib_texts()); },
           [&] { m.perplexity(eval_text(), {.ctx = 256}); },
           [&] { m.generate_ids(ids, {.n_predict = 2}); },
           [&] { m.save_quantized(test::TempDir().path() / "never"); }}) {
    try {
      call();
      ADD_FAILURE() << "a half-quantized model was used";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kArgument);
      EXPECT_NE(std::string(e.what()).find("load the model again"), std::string::npos) << e.what();
    }
  }
}

TEST(InterruptCheck, InterruptedQuantizeModelResumes) {
  test::TempDir tmp;
  QuantizeConfig q;
  q.group_size = 32;
  CalibrationOptions c;
  c.file = test::data_dir() / "text" / "tinystories-calib.txt";
  c.nsamples = 8;
  c.seqlen = 128;
  const auto whole = tmp.path() / "whole", resumed = tmp.path() / "resumed";
  quantize_model(test::stories_dir(), whole, q, c);
  {
    StopAt s{60};
    ScopedInterruptCheck g(s.check());
    EXPECT_EQ(kind_of([&] { quantize_model(test::stories_dir(), resumed, q, c); }),
              ErrorKind::kInterrupted);
  }
  EXPECT_FALSE(std::filesystem::exists(resumed));
  const auto rep = quantize_model(test::stories_dir(), resumed, q, c);
  EXPECT_GT(rep.layers_resumed, 0);
  EXPECT_LT(rep.layers_resumed, rep.layers);
  EXPECT_EQ(test::read_file(whole / "model.safetensors"),
            test::read_file(resumed / "model.safetensors"));
}

TEST(Runtime, ThreadCountIsPublic) {
  const int before = num_threads();
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(before);
  EXPECT_EQ(num_threads(), before);
}

TEST(Runtime, QuantizeConfigIsCheckedBeforeLoading) {
  QuantizeConfig q;
  q.bits = 5;
  try {
    validate_quantize_config(q);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kArgument);
    EXPECT_NE(std::string(e.what()).find("bits = 5"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kind_of([&] { CausalLM::from_pretrained(test::stories_dir(), q); }),
            ErrorKind::kArgument);
  q = {};
  q.group_size = 7;
  EXPECT_EQ(kind_of([&] { validate_quantize_config(q); }), ErrorKind::kArgument);
  q = {};
  q.format = "marlin";
  EXPECT_EQ(kind_of([&] { validate_quantize_config(q); }), ErrorKind::kArgument);
  q = {};
  q.calib_dtype = "fp16";
  try {
    validate_quantize_config(q);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kArgument);
    EXPECT_NE(std::string(e.what()).find("--calib-dtype fp16"), std::string::npos) << e.what();
  }
  for (const char* ok : {"", "fp32", "bf16"}) {
    q.calib_dtype = ok;
    EXPECT_NO_THROW(validate_quantize_config(q)) << ok;
  }
  q = {};
  q.sym = false;
  q.format = "gptq";  // asymmetric v1: packed as GPTQModel packs it
  EXPECT_NO_THROW(validate_quantize_config(q));
  EXPECT_NO_THROW(validate_quantize_config(QuantizeConfig{}));
}

}  // namespace
}  // namespace gptq
