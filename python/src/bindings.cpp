// gptq_cpp._core: the public C++ API (include/gptq) as a Python module, and nothing more. The
// AutoGPTQ/GPTQModel-shaped API, input conversion and progress bars live in python/gptq_cpp/.
//
// Every call that does real work runs through `run()`: the GIL is released, the thread count of
// the call is set, and an interrupt check (gptq/runtime.h) takes the GIL between units of work to
// let Python run its signal handlers, so Ctrl-C stops the call with KeyboardInterrupt. Python
// callbacks (progress, streamed text) take the GIL themselves; an exception they raise stops the
// call and comes out of it unchanged. gptq::Error becomes the class of gptq_cpp.errors registered
// for its kind, with the same message.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "gptq/gptq.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

constexpr int kErrorKinds = static_cast<int>(gptq::ErrorKind::kInterrupted) + 1;
// Python classes by ErrorKind, set once by gptq_cpp.errors at import (strong references that
// live as long as the process: the classes must outlive every call that may raise them).
std::array<PyObject*, kErrorKinds> g_error_classes{};

// A Python exception raised while a call ran without the GIL (by a signal handler during an
// interrupt check, or by a callback). Touched only with the GIL held.
struct Pending {
  std::optional<nb::python_error> error;
};

// Sets the thread count for one call and restores the previous one after it (n <= 0: unchanged).
class CallThreads {
 public:
  explicit CallThreads(int n) : previous_(n > 0 ? gptq::num_threads() : 0) {
    if (n > 0) gptq::set_num_threads(n);
  }
  ~CallThreads() {
    if (previous_ > 0) gptq::set_num_threads(previous_);
  }
  CallThreads(const CallThreads&) = delete;
  CallThreads& operator=(const CallThreads&) = delete;

 private:
  int previous_;
};

// Runs fn() without the GIL; see the file comment.
template <typename Fn>
auto run(int threads, Pending& pending, Fn&& fn) -> decltype(fn()) {
  CallThreads ct(threads);
  gptq::ScopedInterruptCheck check([&pending] {
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    pending.error.emplace();  // takes the exception the handler raised (KeyboardInterrupt)
    return true;
  });
  try {
    nb::gil_scoped_release release;
    return fn();
  } catch (const gptq::Error&) {
    // The GIL is held again here. An interrupt or a failed callback is reported as what Python
    // raised, not as the C++ error it was carried out by.
    if (pending.error) {
      nb::python_error e = std::move(*pending.error);
      pending.error.reset();
      throw e;
    }
    throw;
  }
}

// A progress callback for the C++ API from an optional Python callable f(stage, done, total,
// item). Called without the GIL.
gptq::ProgressCallback progress_callback(const std::optional<nb::callable>& f, Pending& pending) {
  if (!f) return {};
  return [fn = *f, &pending](const gptq::Progress& p) {
    nb::gil_scoped_acquire gil;
    try {
      fn(p.stage, p.done, p.total, p.item);
    } catch (nb::python_error& e) {
      pending.error.emplace(std::move(e));
      throw gptq::Error(gptq::ErrorKind::kInterrupted, "stopped by the progress callback");
    }
  };
}

gptq::TokenCallback text_callback(const std::optional<nb::callable>& f, Pending& pending) {
  if (!f) return {};
  return [fn = *f, &pending](const std::string& piece) {
    nb::gil_scoped_acquire gil;
    try {
      fn(piece);
    } catch (nb::python_error& e) {
      pending.error.emplace(std::move(e));
      throw gptq::Error(gptq::ErrorKind::kInterrupted, "stopped by the text callback");
    }
  };
}

using IdArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

std::vector<int32_t> to_vector(const IdArray& a) {
  return std::vector<int32_t>(a.data(), a.data() + a.shape(0));
}

// A loaded model. Inference calls may run from several Python threads at once (shared lock);
// quantize() needs the model alone. Locks are taken after the GIL is released, so a thread
// waiting for the lock never holds the GIL that the lock's owner may need for a callback.
struct Model {
  explicit Model(gptq::CausalLM m) : lm(std::move(m)) {}
  gptq::CausalLM lm;
  std::shared_mutex mu;
};

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "gptq.cpp's C++ API as a Python module (use the gptq_cpp package, not this module).";
  m.attr("__version__") = GPTQ_PY_VERSION;

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const gptq::Error& e) {
      PyObject* cls = g_error_classes[static_cast<int>(e.kind())];
      PyErr_SetString(cls ? cls : PyExc_RuntimeError, e.what());
    }
  });
  m.def(
      "_set_error_classes",
      [](const std::vector<nb::object>& classes) {
        if (classes.size() != static_cast<size_t>(kErrorKinds)) {
          throw nb::value_error("expected one exception class per gptq::ErrorKind");
        }
        for (size_t i = 0; i < classes.size(); ++i) {
          if (!PyExceptionClass_Check(classes[i].ptr()))
            throw nb::type_error("not an exception class");
          Py_XDECREF(g_error_classes[i]);
          g_error_classes[i] = classes[i].inc_ref().ptr();
        }
      },
      "classes"_a, "Registers the Python class raised for each gptq::ErrorKind, in enum order.");
  m.attr("error_kinds") = nb::make_tuple("io", "format", "config", "shape", "unsupported",
                                         "numeric", "argument", "interrupted");

  m.def("set_num_threads", &gptq::set_num_threads, "n"_a,
        "Sets the library's thread count for the whole process (n <= 0: $GPTQ_NUM_THREADS, else "
        "all CPUs).");
  m.def("num_threads", &gptq::num_threads, "The library's thread count in force.");
  m.def("blas_kernels", &gptq::blas_kernels,
        "The kernels OpenBLAS runs ('Haswell', 'SkylakeX', 'Zen', ...).");
  m.def("blas_kernels_replaced", &gptq::blas_kernels_replaced,
        "The kernels OpenBLAS had chosen before gptq.cpp switched them at load ('Prescott' where it "
        "did not know this CPU), or ''.");

  nb::class_<gptq::QuantizeConfig>(m, "QuantizeConfig",
                                   "gptq::QuantizeConfig: the settings of one quantization.")
      .def(nb::init<>())
      .def_rw("bits", &gptq::QuantizeConfig::bits)
      .def_rw("group_size", &gptq::QuantizeConfig::group_size)
      .def_rw("desc_act", &gptq::QuantizeConfig::desc_act)
      .def_rw("static_groups", &gptq::QuantizeConfig::static_groups)
      .def_rw("sym", &gptq::QuantizeConfig::sym)
      .def_rw("damp_percent", &gptq::QuantizeConfig::damp_percent)
      .def_rw("mse", &gptq::QuantizeConfig::mse)
      .def_rw("damp_search", &gptq::QuantizeConfig::damp_search)
      .def_rw("act_group_aware", &gptq::QuantizeConfig::act_group_aware)
      .def_rw("true_sequential", &gptq::QuantizeConfig::true_sequential)
      .def_rw("method", &gptq::QuantizeConfig::method)
      .def_rw("format", &gptq::QuantizeConfig::format)
      .def_rw("calib_dtype", &gptq::QuantizeConfig::calib_dtype)
      .def_rw("grid", &gptq::QuantizeConfig::grid)
      .def_rw("mse_hessian", &gptq::QuantizeConfig::mse_hessian);
  m.def("validate_quantize_config", &gptq::validate_quantize_config, "config"_a,
        "Raises ArgumentError naming the field when a setting is out of range.");

  nb::class_<gptq::ModuleReport>(m, "ModuleReport", "What quantization did to one linear.")
      .def_ro("module", &gptq::ModuleReport::module)
      .def_ro("bits", &gptq::ModuleReport::bits, "0 when left unquantized")
      .def_ro("n", &gptq::ModuleReport::n)
      .def_ro("k", &gptq::ModuleReport::k)
      .def_ro("loss", &gptq::ModuleReport::loss)
      .def_ro("damp", &gptq::ModuleReport::damp)
      .def_ro("seconds", &gptq::ModuleReport::seconds)
      .def_ro("note", &gptq::ModuleReport::note);
  nb::class_<gptq::QuantizeReport>(m, "QuantizeReport")
      .def_ro("modules", &gptq::QuantizeReport::modules)
      .def_ro("layers", &gptq::QuantizeReport::layers)
      .def_ro("layers_resumed", &gptq::QuantizeReport::layers_resumed)
      .def_ro("calibration_tokens", &gptq::QuantizeReport::calibration_tokens)
      .def_ro("seconds", &gptq::QuantizeReport::seconds)
      .def_ro("output", &gptq::QuantizeReport::output);
  nb::class_<gptq::PerplexityResult>(m, "PerplexityResult")
      .def_ro("ppl", &gptq::PerplexityResult::ppl)
      .def_ro("nll", &gptq::PerplexityResult::nll)
      .def_ro("tokens", &gptq::PerplexityResult::tokens)
      .def_ro("windows", &gptq::PerplexityResult::windows)
      .def_ro("window_nll_sum", &gptq::PerplexityResult::window_nll_sum)
      .def_ro("seconds", &gptq::PerplexityResult::seconds)
      .def("__float__", [](const gptq::PerplexityResult& r) { return r.ppl; })
      .def("__repr__", [](const gptq::PerplexityResult& r) {
        return "PerplexityResult(ppl=" + std::to_string(r.ppl) +
               ", tokens=" + std::to_string(r.tokens) + ", windows=" + std::to_string(r.windows) +
               ")";
      });
  nb::class_<gptq::GenerateResult>(m, "GenerateResult")
      .def_ro("prompt_ids", &gptq::GenerateResult::prompt_ids)
      .def_ro("new_ids", &gptq::GenerateResult::new_ids)
      .def_ro("text", &gptq::GenerateResult::text)
      .def_ro("prefill_seconds", &gptq::GenerateResult::prefill_seconds)
      .def_ro("decode_seconds", &gptq::GenerateResult::decode_seconds)
      .def_ro("stopped_at_eos", &gptq::GenerateResult::stopped_at_eos);
  nb::class_<gptq::ModelInfo>(m, "ModelInfo")
      .def_ro("model_type", &gptq::ModelInfo::model_type)
      .def_ro("architecture", &gptq::ModelInfo::architecture)
      .def_ro("layers", &gptq::ModelInfo::layers)
      .def_ro("hidden", &gptq::ModelInfo::hidden)
      .def_ro("intermediate", &gptq::ModelInfo::intermediate)
      .def_ro("heads", &gptq::ModelInfo::heads)
      .def_ro("kv_heads", &gptq::ModelInfo::kv_heads)
      .def_ro("head_dim", &gptq::ModelInfo::head_dim)
      .def_ro("vocab", &gptq::ModelInfo::vocab)
      .def_ro("max_positions", &gptq::ModelInfo::max_positions)
      .def_ro("parameters", &gptq::ModelInfo::parameters)
      .def_ro("tied_embeddings", &gptq::ModelInfo::tied_embeddings)
      .def_ro("dtype", &gptq::ModelInfo::dtype)
      .def_ro("file_bytes", &gptq::ModelInfo::file_bytes)
      .def_ro("quantized", &gptq::ModelInfo::quantized)
      .def_ro("bits", &gptq::ModelInfo::bits)
      .def_ro("group_size", &gptq::ModelInfo::group_size)
      .def_ro("desc_act", &gptq::ModelInfo::desc_act)
      .def_ro("sym", &gptq::ModelInfo::sym)
      .def_ro("checkpoint_format", &gptq::ModelInfo::checkpoint_format)
      .def_ro("quantized_linears", &gptq::ModelInfo::quantized_linears)
      .def_ro("dense_linears", &gptq::ModelInfo::dense_linears);

  nb::class_<gptq::Tokenizer>(m, "Tokenizer", "gptq::Tokenizer: tokenizer.json read by gptq.cpp.")
      .def_static(
          "from_dir",
          [](const std::filesystem::path& dir) { return gptq::Tokenizer::from_dir(dir); }, "dir"_a,
          "Reads <dir>/tokenizer.json (and tokenizer_config.json, generation_config.json when "
          "present).")
      .def(
          "encode",
          [](const gptq::Tokenizer& t, const std::string& text, bool add_special) {
            std::vector<int32_t> ids;
            {
              nb::gil_scoped_release release;
              ids = t.encode(text, add_special);
            }
            return ids;
          },
          "text"_a, "add_special"_a = true,
          "Token ids of text; BOS first when add_special and the tokenizer adds one.")
      .def(
          "decode",
          [](const gptq::Tokenizer& t, const IdArray& ids, bool skip_special) {
            return t.decode(to_vector(ids), skip_special);
          },
          "ids"_a, "skip_special"_a = true,
          "UTF-8 text of ids; special tokens skipped when skip_special.")
      .def_prop_ro("vocab_size", &gptq::Tokenizer::vocab_size)
      .def_prop_ro("bos_id", &gptq::Tokenizer::bos_id)
      .def_prop_ro("eos_ids", &gptq::Tokenizer::eos_ids)
      .def_prop_ro("add_bos", &gptq::Tokenizer::add_bos)
      .def("is_special", &gptq::Tokenizer::is_special, "id"_a)
      .def("id_to_piece", &gptq::Tokenizer::id_to_piece, "id"_a);

  nb::class_<Model>(m, "CausalLM",
                    "gptq::CausalLM: a model folder loaded for inference or quantization.")
      .def_static(
          "load",
          [](const std::filesystem::path& dir, const std::optional<gptq::QuantizeConfig>& qcfg,
             int threads, int lm_head_bits, bool dequantize, std::optional<nb::callable> progress) {
            Pending pending;
            gptq::LoadOptions lo;
            lo.lm_head_bits = lm_head_bits;
            lo.dequantize = dequantize;
            lo.progress = progress_callback(progress, pending);
            return run(threads, pending, [&] {
              lo.threads = gptq::num_threads();  // from_pretrained sets it: keep the one in force
              return new Model(qcfg ? gptq::CausalLM::from_pretrained(dir, *qcfg, lo)
                                    : gptq::CausalLM::from_pretrained(dir, lo));
            });
          },
          "dir"_a, "quantize_config"_a = nb::none(), "threads"_a = 0, "lm_head_bits"_a = 0,
          "dequantize"_a = false, "progress"_a = nb::none(), nb::rv_policy::take_ownership,
          "CausalLM::from_pretrained; threads <= 0 keeps the process's thread count.")
      .def_prop_ro(
          "tokenizer", [](Model& self) -> const gptq::Tokenizer& { return self.lm.tokenizer(); },
          nb::rv_policy::reference_internal)
      .def("info", [](Model& self) { return self.lm.info(); })
      .def_prop_ro("context_length", [](Model& self) { return self.lm.context_length(); })
      .def(
          "logits",
          [](Model& self, const IdArray& ids, int threads) {
            Pending pending;
            auto v = to_vector(ids);
            auto* out = new std::vector<float>(run(threads, pending, [&] {
              std::shared_lock lock(self.mu);
              return self.lm.logits(v);
            }));
            nb::capsule owner(out,
                              [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
            const size_t t = v.size(), vocab = t ? out->size() / t : 0;
            return nb::ndarray<nb::numpy, float, nb::ndim<2>>(out->data(), {t, vocab}, owner);
          },
          "ids"_a, "threads"_a = 0, "Logits [len(ids), vocab] (float32); row i predicts token i+1.")
      .def(
          "generate_ids",
          [](Model& self, const IdArray& ids, int n_predict, float temperature, int top_k,
             float top_p, uint64_t seed, bool ignore_eos, std::optional<nb::callable> on_text,
             int threads) {
            Pending pending;
            gptq::GenerateOptions go;
            go.n_predict = n_predict;
            go.temperature = temperature;
            go.top_k = top_k;
            go.top_p = top_p;
            go.seed = seed;
            go.ignore_eos = ignore_eos;
            auto v = to_vector(ids);
            auto cb = text_callback(on_text, pending);
            return run(threads, pending, [&] {
              std::shared_lock lock(self.mu);
              return self.lm.generate_ids(v, go, cb);
            });
          },
          "ids"_a, "n_predict"_a = 128, "temperature"_a = 0.8f, "top_k"_a = 40, "top_p"_a = 0.95f,
          "seed"_a = 0, "ignore_eos"_a = false, "on_text"_a = nb::none(), "threads"_a = 0,
          "CausalLM::generate_ids.")
      .def(
          "perplexity",
          [](Model& self, const std::string& text, int64_t ctx, bool bos_per_window,
             int64_t max_windows, std::optional<nb::callable> progress, int threads) {
            Pending pending;
            gptq::PerplexityOptions po;
            po.ctx = ctx;
            po.bos_per_window = bos_per_window;
            po.max_windows = max_windows;
            auto cb = progress_callback(progress, pending);
            return run(threads, pending, [&] {
              std::shared_lock lock(self.mu);
              return self.lm.perplexity(text, po, cb);
            });
          },
          "text"_a, "ctx"_a = 512, "bos_per_window"_a = false, "max_windows"_a = -1,
          "progress"_a = nb::none(), "threads"_a = 0,
          "CausalLM::perplexity (GPTQ-paper convention unless bos_per_window).")
      .def(
          "perplexity_ids",
          [](Model& self, const IdArray& ids, int64_t ctx, bool bos_per_window, int64_t max_windows,
             std::optional<nb::callable> progress, int threads) {
            Pending pending;
            gptq::PerplexityOptions po;
            po.ctx = ctx;
            po.bos_per_window = bos_per_window;
            po.max_windows = max_windows;
            auto v = to_vector(ids);
            auto cb = progress_callback(progress, pending);
            return run(threads, pending, [&] {
              std::shared_lock lock(self.mu);
              return self.lm.perplexity_ids(v, po, cb);
            });
          },
          "ids"_a, "ctx"_a = 512, "bos_per_window"_a = false, "max_windows"_a = -1,
          "progress"_a = nb::none(), "threads"_a = 0,
          "CausalLM::perplexity_ids: a token stream without BOS.")
      .def(
          "quantize_ids",
          [](Model& self, const std::vector<IdArray>& examples,
             std::optional<nb::callable> progress, int threads) {
            Pending pending;
            std::vector<std::vector<int32_t>> ex;
            ex.reserve(examples.size());
            for (const auto& e : examples) ex.push_back(to_vector(e));
            auto cb = progress_callback(progress, pending);
            return run(threads, pending, [&] {
              std::unique_lock lock(self.mu);
              return self.lm.quantize(ex, cb);
            });
          },
          "examples"_a, "progress"_a = nb::none(), "threads"_a = 0,
          "CausalLM::quantize on token-id sequences (int32 arrays, one sequence each, no padding).")
      .def(
          "quantize_texts",
          [](Model& self, const std::vector<std::string>& examples,
             std::optional<nb::callable> progress, int threads) {
            Pending pending;
            auto cb = progress_callback(progress, pending);
            return run(threads, pending, [&] {
              std::unique_lock lock(self.mu);
              return self.lm.quantize(examples, cb);
            });
          },
          "examples"_a, "progress"_a = nb::none(), "threads"_a = 0,
          "CausalLM::quantize on texts (tokenized with BOS, cut to the context).")
      .def(
          "save_quantized",
          [](Model& self, const std::filesystem::path& out, bool force, uint64_t max_shard_bytes) {
            Pending pending;
            run(0, pending, [&] {
              std::shared_lock lock(self.mu);
              self.lm.save_quantized(out, force, max_shard_bytes);
            });
          },
          "out"_a, "force"_a = false, "max_shard_bytes"_a = 4'000'000'000ull,
          "CausalLM::save_quantized: writes a GPTQ folder atomically.");

  m.def(
      "quantize_model",
      [](const std::filesystem::path& model_dir, const std::filesystem::path& out,
         const gptq::QuantizeConfig& q, const std::filesystem::path& calib_file, int nsamples,
         int seqlen, uint64_t seed, int threads, bool force, uint64_t max_shard_bytes,
         std::optional<nb::callable> progress, const std::string& hidden_states,
         const std::filesystem::path& offload_dir) {
        Pending pending;
        gptq::CalibrationOptions c;
        c.file = calib_file;
        c.nsamples = nsamples;
        c.seqlen = seqlen;
        c.seed = seed;
        gptq::QuantizeRunOptions ro;
        ro.force = force;
        ro.max_shard_bytes = max_shard_bytes;
        ro.hidden_states = hidden_states;
        ro.offload_dir = offload_dir;
        ro.progress = progress_callback(progress, pending);
        return run(threads, pending, [&] {
          ro.threads = gptq::num_threads();  // quantize_model sets it: keep the one in force
          return gptq::quantize_model(model_dir, out, q, c, ro);
        });
      },
      "model_dir"_a, "out"_a, "config"_a, "calib_file"_a = std::filesystem::path(),
      "nsamples"_a = 128, "seqlen"_a = 0, "seed"_a = 0, "threads"_a = 0, "force"_a = false,
      "max_shard_bytes"_a = 4'000'000'000ull, "progress"_a = nb::none(), "hidden_states"_a = "auto",
      "offload_dir"_a = std::filesystem::path(),
      "gptq::quantize_model: the streaming, resumable path of `gptq quantize` (one layer resident "
      "at a time).");
}
