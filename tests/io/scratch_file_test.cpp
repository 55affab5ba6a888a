// io::ScratchFile: what is written comes back, the file has no name in its folder (it cannot be
// left behind), and a bad folder or a read of what was never written is an error naming it.
#include "io/scratch_file.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "common/test_util.h"
#include "gptq/error.h"

namespace gptq::io {
namespace {

TEST(ScratchFile, WritesReadBackAtAnyOffsetAndLeaveNoName) {
  test::TempDir tmp;
  {
    ScratchFile f(tmp.path());
    f.reserve(3 << 20);
    std::vector<float> a(1 << 18), b(1000);
    std::iota(a.begin(), a.end(), 0.5f);
    std::iota(b.begin(), b.end(), -7.0f);
    f.write_at(0, a.data(), a.size() * 4);
    f.write_at(a.size() * 4 + 12, b.data(), b.size() * 4);
    f.write_at(8, b.data(), 8);  // overwrite a[2], a[3]
    EXPECT_TRUE(std::filesystem::is_empty(tmp.path())) << "the scratch file must have no name";
    std::vector<float> ra(a.size()), rb(b.size());
    f.read_at(0, ra.data(), ra.size() * 4);
    f.read_at(a.size() * 4 + 12, rb.data(), rb.size() * 4);
    a[2] = b[0];
    a[3] = b[1];
    EXPECT_EQ(ra, a);
    EXPECT_EQ(rb, b);
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

TEST(ScratchFile, ErrorsNameTheFolder) {
  test::TempDir tmp;
  const auto missing = tmp.path() / "no-such-folder";
  try {
    ScratchFile f(missing);
    FAIL() << "a missing folder must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  ScratchFile f(tmp.path());
  const char x[4] = {1, 2, 3, 4};
  f.write_at(0, x, 4);
  char y[8];
  try {
    f.read_at(0, y, 8);  // 4 bytes past the end
    FAIL() << "a read past what was written must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find(tmp.path().string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gptq::io
