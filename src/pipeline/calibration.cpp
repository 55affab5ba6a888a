#include "pipeline/calibration.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/log.h"
#include "gptq/error.h"

namespace gptq::pipeline {
namespace {

std::vector<std::vector<int32_t>> windows_from_text(const std::string& text, const std::string& origin,
                                                    const CalibrationOptions& o, const Tokenizer& tok) {
  const std::vector<int32_t> stream = tok.encode(text, false);
  const bool bos = tok.add_bos() && tok.bos_id() >= 0;
  const int64_t body = o.seqlen - (bos ? 1 : 0);  // text tokens per window
  if (static_cast<int64_t>(stream.size()) < body + 1) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: the calibration text has {} tokens, fewer than one window of --seqlen {}; "
                            "give more text or a smaller --seqlen",
                            origin, stream.size(), o.seqlen));
  }
  // As the GPTQ paper samples them: a uniformly random start for each window.
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(stream.size()) - body - 1);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < o.nsamples; ++i) {
    const int64_t s = start(rng);
    std::vector<int32_t> w;
    w.reserve(static_cast<size_t>(o.seqlen));
    if (bos) w.push_back(tok.bos_id());
    w.insert(w.end(), stream.begin() + s, stream.begin() + s + body);
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace

std::vector<std::vector<int32_t>> build_calibration(const CalibrationOptions& opts, const Tokenizer& tok,
                                                    int64_t vocab, int64_t max_positions) {
  CalibrationOptions o = opts;
  const bool default_seqlen = o.seqlen == 0;
  if (default_seqlen) o.seqlen = static_cast<int>(std::min<int64_t>(kDefaultSeqlen, max_positions));
  if (o.nsamples < 1) throw Error(ErrorKind::kArgument, fmt::format("--nsamples {}: must be at least 1", o.nsamples));
  if (o.seqlen < 2) throw Error(ErrorKind::kArgument, fmt::format("--seqlen {}: must be at least 2", o.seqlen));
  // The activations of every calibration token are kept in fp32 for a whole layer; past ~2^27
  // tokens that is more memory than any machine we run on, so say so instead of failing to
  // allocate halfway through.
  constexpr int64_t kMaxTokens = int64_t{1} << 27;
  if (static_cast<int64_t>(o.nsamples) * o.seqlen > kMaxTokens) {
    throw Error(ErrorKind::kArgument,
                fmt::format("--nsamples {} x --seqlen {} = {} calibration tokens; at most {} are supported",
                            o.nsamples, o.seqlen, static_cast<int64_t>(o.nsamples) * o.seqlen, kMaxTokens));
  }
  if (o.seqlen > max_positions) {
    throw Error(ErrorKind::kArgument, fmt::format("--seqlen {} exceeds the model's context (max_position_embeddings = {})",
                                                  o.seqlen, max_positions));
  }
  std::vector<std::vector<int32_t>> out;
  if (o.file.empty()) {
    out = windows_from_text(builtin_calibration_text(), "built-in calibration text", o, tok);
  } else {
    std::ifstream f(o.file, std::ios::binary);
    if (!f) throw Error(ErrorKind::kIo, fmt::format("{}: cannot read the calibration file", o.file.string()));
    const auto ext = o.file.extension().string();
    if (ext == ".jsonl" || ext == ".json") {
      std::string line;
      int64_t lineno = 0, rows_cut = 0, longest = 0;
      while (std::getline(f, line) && static_cast<int>(out.size()) < o.nsamples) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        const std::string where = fmt::format("{}:{}", o.file.string(), lineno);
        if (j.is_discarded() || !j.is_object()) {
          throw Error(ErrorKind::kArgument, fmt::format("{}: not a JSON object", where));
        }
        std::vector<int32_t> ids;
        if (auto it = j.find("input_ids"); it != j.end()) {
          if (!it->is_array()) throw Error(ErrorKind::kArgument, fmt::format("{}: \"input_ids\" is not a list", where));
          for (const auto& v : *it) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab) {
              throw Error(ErrorKind::kArgument,
                          fmt::format("{}: \"input_ids\" holds {}, not a token id in [0, {})", where, v.dump(), vocab));
            }
            ids.push_back(v.get<int32_t>());
          }
        } else if (auto tt = j.find("text"); tt != j.end() && tt->is_string()) {
          ids = tok.encode(tt->get<std::string>(), true);
        } else {
          throw Error(ErrorKind::kArgument, fmt::format("{}: expected a \"text\" string or an \"input_ids\" list", where));
        }
        if (ids.empty()) continue;
        if (static_cast<int64_t>(ids.size()) > o.seqlen) {
          ++rows_cut;
          longest = std::max<int64_t>(longest, static_cast<int64_t>(ids.size()));
          ids.resize(static_cast<size_t>(o.seqlen));
        }
        out.push_back(std::move(ids));
      }
      if (out.empty()) throw Error(ErrorKind::kArgument, fmt::format("{}: no calibration rows", o.file.string()));
      if (rows_cut > 0) {
        core::log_warn("{}: {} row(s) longer than {} tokens (the longest has {}) were cut to {}{}", o.file.string(),
                       rows_cut, o.seqlen, longest, o.seqlen,
                       default_seqlen ? fmt::format(" (the default --seqlen: min({}, context {}))", kDefaultSeqlen,
                                                    max_positions)
                                      : std::string());
      }
    } else {
      std::ostringstream ss;
      ss << f.rdbuf();
      out = windows_from_text(ss.str(), o.file.string(), o, tok);
    }
  }
  for (const auto& s : out) {
    for (int32_t id : s) {
      if (id < 0 || id >= vocab) {
        throw Error(ErrorKind::kArgument, fmt::format("calibration token id {} is outside the vocabulary [0, {})", id, vocab));
      }
    }
  }
  return out;
}

const char* builtin_calibration_text() {
  // Plain, varied English written for this project (no third-party text), long enough for a
  // few windows of a few hundred tokens. Real quantization should pass --calib.
  return R"(Once upon a time, in a small town by the sea, there lived a girl named Mia. Every morning she walked to the harbor with her dog, Max, to watch the boats come in. The fishermen waved to her and sometimes gave her a shiny shell.
One day, Mia saw a little boat that did not come back with the others. She was worried. She ran to her grandfather and said, "Grandpa, one boat is missing!" Her grandfather looked at the sky. Dark clouds were coming from the west.
"We must help," he said. They took the old red boat and went out on the water. The wind was strong and the waves were big, but Mia was brave. After a long time, they saw a small light. It was the missing boat! A tired man was waving his hat.
They tied a rope to his boat and pulled it home. Everyone in the town was happy. That night, they ate soup together and told stories by the fire. Mia learned that being kind and brave can make a big difference.

The history of the town goes back many centuries. It was founded as a trading post where merchants exchanged salt, wool and timber. In the nineteenth century a railway connected it to the capital, and the population grew from a few hundred people to more than ten thousand. Today the economy depends on tourism, fishing and a small university that specializes in marine biology.
The climate is mild. Summers are warm and dry, with average temperatures of about 24 degrees Celsius, while winters are cool and wet. The coastline is known for its cliffs, sandy beaches and colonies of sea birds, which attract visitors from all over the world.

To make bread at home, you need flour, water, salt and yeast. Mix 500 grams of flour with 10 grams of salt and 7 grams of dry yeast. Add 350 milliliters of warm water and knead the dough for ten minutes, until it is smooth and elastic. Let it rise in a warm place for about an hour, until it has doubled in size. Shape the loaf, let it rest for another 30 minutes, and bake it at 220 degrees for 35 minutes.

A computer program is a list of instructions that tells a machine what to do. Programs are written in languages such as C, Python or Java. A compiler translates the source code into machine code, which the processor can run directly. Good programs are easy to read, well tested, and they handle errors carefully: when a file is missing or broken, the program should explain the problem instead of crashing.
Matrix multiplication is one of the most important operations in scientific computing. Multiplying two matrices of size n by n takes about 2n^3 floating point operations. Modern libraries reach a large fraction of the peak speed of the processor by splitting the matrices into blocks that fit in the cache.

Tom had a red ball. He liked to throw it high in the air and catch it. One day the ball went over the fence into the garden next door. Tom was sad. He knocked on the door, and an old woman opened it. "Can I have my ball, please?" he asked. The woman smiled and gave him the ball and a cookie. "Come and play in my garden any time," she said. Tom said thank you and ran home to tell his mom about his new friend.
Lily and Ben went to the park. Lily said, "Look at the big tree!" Ben wanted to climb it, but Lily said it was too high. They played on the swings instead, and then they shared an apple under the tree. The sun was warm, the birds were singing, and they were very happy.
)";
}

}  // namespace gptq::pipeline
