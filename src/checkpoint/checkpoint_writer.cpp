// CheckpointWriter: layer parts in "<out>.partial/parts/", then one pass that streams every
// tensor from the mmapped source and part files into the final shards (no tensor is copied into
// memory), writes the configs, copies the tokenizer files and publishes the folder by rename.
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "checkpoint/gptq_checkpoint.h"
#include "core/log.h"
#include "gptq/error.h"

namespace gptq::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace {

constexpr const char* kRunFile = "run.json";
constexpr const char* kPartsDir = "parts";
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

[[noreturn]] void throw_fs(const std::string& what, const std::error_code& ec) {
  throw Error(ErrorKind::kIo, fmt::format("{}: {}", what, ec.message()));
}

void remove_all_or_throw(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw_fs(fmt::format("cannot remove {}", p.string()), ec);
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) throw_fs(fmt::format("cannot rename {} to {}", from.string(), to.string()), ec);
}

// "out/" and "out" name the same folder; the partial and old folders are siblings of it.
fs::path normalize_out(const fs::path& out) {
  fs::path p = out.lexically_normal();
  if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();
  if (p.empty() || p == "." || p == ".." || p == "/") {
    throw Error(ErrorKind::kArgument,
                fmt::format("output folder \"{}\": expected a folder name, found none", out.string()));
  }
  return p;
}

fs::path sibling(const fs::path& out, const char* ext) {
  fs::path p = out;
  p += ext;
  return p;
}

// The entries of a folder, listed before any of them is removed (removing while iterating is
// unspecified).
std::vector<fs::path> list_dir(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(it->path());
  }
  if (ec) throw_fs(fmt::format("cannot list {}", dir.string()), ec);
  return out;
}

// Removes everything in the partial folder but the parts and run.json.
void remove_all_but_parts(const fs::path& partial) {
  for (const fs::path& p : list_dir(partial)) {
    const std::string name = p.filename().string();
    if (name != kPartsDir && name != kRunFile) remove_all_or_throw(p);
  }
}

fs::path parent_or_dot(const fs::path& p) { return p.has_parent_path() ? p.parent_path() : fs::path("."); }

// Parses "layer-00003.safetensors"; false for any other name.
bool parse_part_name(const std::string& name, int64_t* layer) {
  static const std::string pre = "layer-", post = ".safetensors";
  if (name.size() <= pre.size() + post.size() || name.compare(0, pre.size(), pre) != 0 ||
      name.compare(name.size() - post.size(), post.size(), post) != 0) {
    return false;
  }
  const std::string digits = name.substr(pre.size(), name.size() - pre.size() - post.size());
  if (digits.size() < 5 || digits.size() > 9) return false;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *layer = v;
  return true;
}

// Orders names with their digit runs compared as numbers, so that shards hold whole layers in
// order ("layers.9" before "layers.10"); ties fall back to plain comparison.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = a[i] >= '0' && a[i] <= '9', db = b[j] >= '0' && b[j] <= '9';
    if (da && db) {
      size_t ie = i, je = j;
      while (ie < a.size() && a[ie] >= '0' && a[ie] <= '9') ++ie;
      while (je < b.size() && b[je] >= '0' && b[je] <= '9') ++je;
      // Compare without leading zeros: longer means larger, then lexicographic.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      const int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
      ++i;
      ++j;
    }
  }
  if ((a.size() - i) != (b.size() - j)) return a.size() - i < b.size() - j;
  return a < b;
}

std::string shard_name(size_t i, size_t n) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
}

std::string module_of(const std::string& name, std::string* leaf) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) {
    *leaf = name;
    return {};
  }
  *leaf = name.substr(dot + 1);
  return name.substr(0, dot);
}

}  // namespace

CheckpointWriter::CheckpointWriter(fs::path source_dir, fs::path out, WriterOptions opts)
    : source_dir_(std::move(source_dir)), out_(normalize_out(out)), opts_(std::move(opts)) {
  partial_ = sibling(out_, ".partial");
  if (opts_.max_shard_bytes == 0) {
    throw Error(ErrorKind::kArgument, "max shard size: expected a positive number of bytes, found 0");
  }
  std::error_code ec;
  const auto out_status = fs::symlink_status(out_, ec);
  if (fs::exists(out_status)) {
    if (!opts_.force) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("{}: the output folder already exists (use --force to replace it)",
                              out_.string()));
    }
    if (!fs::is_directory(out_status)) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("{}: expected a folder to replace, found something else; remove it "
                              "first",
                              out_.string()));
    }
    if (fs::equivalent(out_, source_dir_, ec)) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("{}: the output folder is the source model folder (expected another "
                              "folder)",
                              out_.string()));
    }
  }
  open_partial();
}

void CheckpointWriter::open_partial() {
  std::error_code ec;
  const fs::path run_file = partial_ / kRunFile;
  const fs::path parts_dir = partial_ / kPartsDir;
  bool reuse = false;
  if (fs::exists(fs::symlink_status(partial_, ec))) {
    const bool is_dir = fs::is_directory(fs::symlink_status(partial_, ec));
    const bool ours = is_dir && fs::is_regular_file(run_file, ec);
    if (ours && opts_.resume) {
      try {
        const json j = json::parse(io::read_text_file(run_file));
        reuse = j.is_object() && j.contains("run_signature") && j["run_signature"].is_string() &&
                j["run_signature"].get<std::string>() == opts_.run_signature;
      } catch (const std::exception&) {
        reuse = false;  // unreadable: start afresh
      }
      if (!reuse) {
        core::log_info("{}: discarding the parts of a run with other settings", partial_.string());
      }
    }
    if (!ours && !opts_.force) {
      // An empty folder or one with nothing but our parts folder is what a crash right after
      // creating it leaves; anything else is not ours to delete.
      bool only_ours = is_dir;
      if (is_dir) {
        for (const fs::path& p : list_dir(partial_)) only_ours = only_ours && p.filename() == kPartsDir;
      }
      if (!only_ours) {
        throw Error(ErrorKind::kArgument,
                    fmt::format("{}: exists but holds no {} of ours (expected a partial output "
                                "of gptq.cpp); remove it or use --force",
                                partial_.string(), kRunFile));
      }
    }
    if (!reuse) remove_all_or_throw(partial_);
  }

  if (!reuse) {
    fs::create_directories(parts_dir, ec);
    if (ec) throw_fs(fmt::format("cannot create {}", parts_dir.string()), ec);
    ordered_json run = {{"run_signature", opts_.run_signature},
                        {"quantizer", std::string("gptq.cpp:") + GPTQ_VERSION}};
    io::write_file_atomic(run_file, run.dump(2) + "\n");
    io::fsync_dir(parent_or_dot(partial_));
    return;
  }

  // Reusing: drop whatever a failed finalize or a crash left (shards, temporaries), reopen the
  // parts. A part that does not open is dropped and will be recomputed.
  remove_all_but_parts(partial_);
  fs::create_directories(parts_dir, ec);
  if (ec) throw_fs(fmt::format("cannot create {}", parts_dir.string()), ec);
  for (const fs::path& p : list_dir(parts_dir)) {
    const std::string name = p.filename().string();
    if (name.find(".tmp.") != std::string::npos) {
      remove_all_or_throw(p);  // the temporary of an interrupted atomic write
      continue;
    }
    int64_t layer = 0;
    // Other files are the caller's (per-layer reports, say): they are kept.
    if (!fs::is_regular_file(fs::symlink_status(p, ec)) || !parse_part_name(name, &layer)) continue;
    try {
      parts_[layer] = io::SafetensorsFile::open(p);
    } catch (const Error& err) {
      core::log_warn("dropping an unreadable layer part ({}); the layer will be redone", err.what());
      remove_all_or_throw(p);
    }
  }
  if (!parts_.empty()) {
    core::log_info("{}: resuming with {} finished layer(s)", partial_.string(), parts_.size());
  }
}

// Drops a written tensor's pages from the resident set, whichever mapping it lives in, so that
// assembling a multi-GB model does not grow the RSS by the size of the model.
void CheckpointWriter::release_pages(const io::TensorStore& source, const io::TensorInfo& t) const {
  for (const auto& [layer, part] : parts_) {
    if (&part->path() == t.file) {
      part->release(t);
      return;
    }
  }
  source.release(t);
}

void CheckpointWriter::check_open() const {
  if (finalized_) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: the checkpoint writer was already finalized", out_.string()));
  }
}

fs::path CheckpointWriter::part_path(int64_t layer) const {
  return partial_ / kPartsDir / fmt::format("layer-{:05d}.safetensors", layer);
}

bool CheckpointWriter::has_layer(int64_t layer) const { return parts_.count(layer) != 0; }

void CheckpointWriter::write_layer(int64_t layer, const std::vector<io::TensorToWrite>& tensors) {
  check_open();
  if (layer < 0 || layer > 999'999'999) {
    throw Error(ErrorKind::kArgument, fmt::format("layer part: expected a layer index in [0, 1e9), found {}", layer));
  }
  const fs::path path = part_path(layer);
  io::write_safetensors(path, tensors, {{"format", "pt"}});
  parts_[layer] = io::SafetensorsFile::open(path);
}

const io::SafetensorsFile& CheckpointWriter::layer_part(int64_t layer) {
  const auto it = parts_.find(layer);
  if (it == parts_.end()) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: no part for layer {} (expected has_layer() first)", partial_.string(), layer));
  }
  return *it->second;
}

void CheckpointWriter::finalize(const io::TensorStore& source, const config::ModelConfig& cfg,
                                const QuantizationSummary& s) {
  check_open();
  auto bad = [&](const std::string& what) {
    throw Error(ErrorKind::kArgument, fmt::format("{}: {}", out_.string(), what));
  };

  // ---- Everything that can be refused is refused before a byte is written. ----
  const std::string qconfig = quantization_config_json(s);
  std::string raw = cfg.raw_json;
  const std::string cfg_origin = cfg.origin.empty() ? (source_dir_ / "config.json").string() : cfg.origin;
  if (raw.empty()) raw = io::read_text_file(source_dir_ / "config.json");
  ordered_json config = ordered_json::parse(raw, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    throw Error(ErrorKind::kConfig,
                fmt::format("{}: expected a JSON object to extend with quantization_config, found "
                            "{}",
                            cfg_origin, config.is_discarded() ? "invalid JSON" : config.type_name()));
  }
  config["quantization_config"] = ordered_json::parse(qconfig);

  for (int64_t l = 0; l < s.num_layers; ++l) {
    if (!has_layer(l)) {
      bad(fmt::format("layer {} of {} has no part (expected every layer written before finalize)", l,
                      s.num_layers));
    }
  }

  // The tensors of the final folder: every part tensor, then each source tensor that no part
  // replaced.
  std::map<std::string, const io::TensorInfo*> chosen;
  std::set<std::string> quantized;  // modules with a .qweight in a part
  for (const auto& [layer, part] : parts_) {
    for (const io::TensorInfo& t : part->tensors()) {
      const auto [it, inserted] = chosen.emplace(t.name, &t);
      if (!inserted) {
        bad(fmt::format("tensor \"{}\" is in two layer parts ({} and {}); expected one", t.name,
                        it->second->file->string(), t.file->string()));
      }
      std::string leaf;
      const std::string module = module_of(t.name, &leaf);
      if (leaf == "qweight") quantized.insert(module);
    }
  }
  const bool tied = cfg.tie_word_embeddings;
  for (const std::string& name : source.names()) {
    if (chosen.count(name)) continue;
    std::string leaf;
    const std::string module = module_of(name, &leaf);
    if (quantized.count(module) && (leaf == "weight" || leaf == "bias")) continue;
    // With tied embeddings every loader makes lm_head the embedding matrix: a stored copy is dead
    // weight (the "duplicated tied lm_head" trap).
    if (tied && name == cfg.arch.lm_head + ".weight") continue;
    chosen.emplace(name, source.find(name));
  }

  // Each quantized module is complete and agrees with the source weight it replaces.
  for (const std::string& m : quantized) {
    for (const char* leaf : {".qzeros", ".scales", ".g_idx"}) {
      if (!chosen.count(m + leaf)) {
        bad(fmt::format("quantized module \"{}\" has no \"{}\" in its layer part", m, m + leaf));
      }
    }
    const io::TensorInfo* w = source.find(m + ".weight");
    const io::TensorInfo* qw = chosen.at(m + ".qweight");
    if (w != nullptr && w->shape.size() == 2) {
      // The module's own bits: its override, else the first matching dynamic rule, else q.bits.
      const auto ov = s.module_overrides.find(m);
      const int bits = ov != s.module_overrides.end() && ov->second.bits ? *ov->second.bits : s.q.scheme_for(m).bits;
      // GPT-2's Conv1D stores the source weight as [K, N]; every other linear as [N, K].
      const int64_t n = cfg.arch.conv1d_weights ? w->shape[1] : w->shape[0];
      const int64_t k = cfg.arch.conv1d_weights ? w->shape[0] : w->shape[1];
      const Shape expect = {k * bits / 32, n};
      if (qw->shape != expect) {
        bad(fmt::format("tensor \"{}\": expected {} for the source weight {} at {} bits, found {}",
                        qw->name, shape_str(expect), shape_str(w->shape), bits,
                        shape_str(qw->shape)));
      }
    }
  }
  // Every block linear is quantized or declared unquantized: a loader that finds a plain
  // ".weight" where the config promises a quantized linear fails.
  if (!s.block_linear_groups.empty() && s.num_layers > 0) {
    const std::set<std::string> unq(s.unquantized_modules.begin(), s.unquantized_modules.end());
    const size_t at = s.block_prefix.find("{layer}");
    for (int64_t l = 0; l < s.num_layers; ++l) {
      std::string prefix = s.block_prefix;
      prefix.replace(at, 7, std::to_string(l));  // quantization_config_json checked the placeholder
      for (const auto& group : s.block_linear_groups) {
        for (const std::string& suffix : group) {
          const std::string m = prefix + suffix;
          const bool q = quantized.count(m) != 0, u = unq.count(m) != 0;
          if (q && u) bad(fmt::format("\"{}\" is quantized but listed as unquantized", m));
          if (!q && !u && source.find(m + ".weight") != nullptr) {
            bad(fmt::format("block linear \"{}\" is neither quantized nor listed as unquantized", m));
          }
        }
      }
    }
  }

  // ---- Shards, in natural name order so that each shard holds consecutive layers. ----
  std::vector<const io::TensorInfo*> order;
  order.reserve(chosen.size());
  for (const auto& [name, t] : chosen) order.push_back(t);
  std::sort(order.begin(), order.end(),
            [](const io::TensorInfo* a, const io::TensorInfo* b) { return natural_less(a->name, b->name); });
  std::vector<std::vector<const io::TensorInfo*>> shards;
  uint64_t in_shard = 0, total = 0;
  for (const io::TensorInfo* t : order) {
    // As Hugging Face does: a tensor larger than the limit gets a shard of its own.
    if (shards.empty() || (in_shard > 0 && in_shard + t->nbytes > opts_.max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += t->nbytes;
    total += t->nbytes;
  }
  if (shards.empty()) shards.emplace_back();  // a model without tensors still gets its file

  // Leftovers of an earlier finalize that failed (shards of another count) must not survive.
  remove_all_but_parts(partial_);
  std::error_code ec;

  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = shards.size() == 1 ? kSingleFile : shard_name(i, shards.size());
    std::vector<io::TensorToWrite> tensors;
    tensors.reserve(shards[i].size());
    for (const io::TensorInfo* t : shards[i]) {
      // data points into a mapping: the writer streams it to disk page by page.
      tensors.push_back({t->name, t->dtype, t->shape, t->data, t->nbytes});
      tensors.back().after_write = [this, &source, t] { release_pages(source, *t); };
      weight_map[t->name] = file;
    }
    io::write_safetensors(partial_ / file, std::move(tensors), {{"format", "pt"}});
  }
  if (shards.size() > 1) {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
    io::write_file_atomic(partial_ / kIndexFile, index.dump(2) + "\n");
  }

  io::write_file_atomic(partial_ / "config.json", config.dump(2) + "\n");
  io::write_file_atomic(partial_ / "quantize_config.json", qconfig + "\n");
  for (const std::string& name : copied_file_names()) {
    const fs::path src = source_dir_ / name;
    if (fs::is_regular_file(src, ec)) io::write_file_atomic(partial_ / name, io::read_text_file(src));
  }
  io::fsync_dir(partial_);

  // ---- Publish: partial -> out (the old folder moves aside first and goes last). ----
  parts_.clear();  // unmap the parts: their tensors are in the shards now
  const fs::path old = sibling(out_, ".old");
  bool replaced = false;
  if (fs::exists(fs::symlink_status(out_, ec))) {
    if (!opts_.force) {
      bad("the output folder appeared while quantizing (use --force to replace it)");
    }
    remove_all_or_throw(old);
    rename_or_throw(out_, old);
    replaced = true;
  }
  fs::rename(partial_, out_, ec);
  if (ec) {
    const std::error_code err = ec;
    if (replaced) fs::rename(old, out_, ec);  // put the old folder back
    throw_fs(fmt::format("cannot rename {} to {}", partial_.string(), out_.string()), err);
  }
  io::fsync_dir(parent_or_dot(out_));
  finalized_ = true;
  // A crash from here on leaves a complete model with a stray parts folder, which loaders ignore.
  remove_all_or_throw(out_ / kPartsDir);
  remove_all_or_throw(out_ / kRunFile);
  io::fsync_dir(out_);
  if (replaced) {
    fs::remove_all(old, ec);
    if (ec) core::log_warn("cannot remove the replaced folder {}: {}", old.string(), ec.message());
  }
  core::log_info("wrote {} ({} tensor(s), {} shard(s), {} bytes)", out_.string(), order.size(),
                 shards.size(), total);
}

}  // namespace gptq::checkpoint
