#include "io/json_strict.h"

#include <fmt/format.h>

#include <set>
#include <vector>

#include "gptq/error.h"

namespace gptq::io::detail {

namespace {

// Deepest nesting of [ and { outside strings. Runs before the parser so that a header of a
// hundred million '[' is refused without building a hundred million nested values.
int max_nesting(std::string_view text) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) max_depth = depth;
      if (max_depth > kMaxJsonDepth) return max_depth;  // enough to refuse
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

std::string clip(std::string_view s, size_t max_len, bool ascii_only) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_len) {
      out += fmt::format("... ({} bytes)", s.size());
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F || (ascii_only && c >= 0x80)) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string describe_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return fmt::format("an object of {} keys", j.size());
    case nlohmann::json::value_t::array:
      return fmt::format("an array of {} elements", j.size());
    case nlohmann::json::value_t::string:
      return fmt::format("the string \"{}\"", clip(j.get_ref<const std::string&>()));
    case nlohmann::json::value_t::boolean:
      return fmt::format("the boolean {}", j.get<bool>());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return fmt::format("the integer {}", j.dump());
    case nlohmann::json::value_t::number_float:
      return fmt::format("the number {}", j.dump());
    default:
      return "an unexpected JSON value";
  }
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& file, const char* what,
                                 const char* key_noun) {
  const int depth = max_nesting(text);
  if (depth > kMaxJsonDepth) {
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: {} nests arrays/objects deeper than expected (at most {} levels, "
                            "found more than {})",
                            file, what, kMaxJsonDepth, kMaxJsonDepth));
  }

  // The keys seen so far in each open object, innermost last. The callback keeps every value, so
  // object_start and object_end events always pair up.
  std::vector<std::set<std::string, std::less<>>> open_objects;
  std::string top_key;       // the last key of the outermost object, to place a duplicate
  std::string duplicate;     // the first duplicated key found
  std::string duplicate_in;  // the outermost key it was found under ("" at the top level)
  auto callback = [&](int cb_depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    switch (event) {
      case nlohmann::json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case nlohmann::json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case nlohmann::json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (cb_depth == 1) top_key = key;
        if (!open_objects.empty() && !open_objects.back().insert(key).second && duplicate.empty()) {
          duplicate = key;
          duplicate_in = cb_depth == 1 ? std::string() : top_key;
        }
        break;
      }
      default:
        break;
    }
    return true;
  };

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: {} is not valid JSON (expected a JSON object, parser says: {})",
                            file, what, clip(e.what(), 400, /*ascii_only=*/true)));
  }
  if (!duplicate.empty()) {
    if (duplicate_in.empty()) {
      throw Error(ErrorKind::kFormat,
                  fmt::format("{}: {} has the {} \"{}\" more than once (expected unique keys, "
                              "found a duplicate)",
                              file, what, key_noun, clip(duplicate)));
    }
    throw Error(ErrorKind::kFormat,
                fmt::format("{}: {}: entry \"{}\" has the key \"{}\" more than once (expected "
                            "unique keys, found a duplicate)",
                            file, what, clip(duplicate_in), clip(duplicate)));
  }
  return j;
}

}  // namespace gptq::io::detail
