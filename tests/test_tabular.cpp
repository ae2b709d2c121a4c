// The scikit-learn CSV loader (Boston housing): the real file, and malformed files rejected with errors that
// name the file, the line and the column.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "nn/data.hpp"

namespace d = sdeuq::data;
namespace fs = std::filesystem;

namespace {

std::string write_tmp(const std::string& name, const std::string& text) {
    const fs::path p = fs::temp_directory_path() / ("sdeuq_test_" + name);
    std::ofstream(p) << text;
    return p.string();
}

std::string error_of(const std::string& path) {
    try {
        d::load_sklearn_csv(path);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

const std::string header = "3,2,,\nA,B,Y\n";

}  // namespace

TEST_CASE("Boston housing loads: 506 x 13, MEDV target, the first and last rows", "[data][tabular]") {
    const auto ds = d::load_boston(d::default_data_dir());
    REQUIRE(ds.n == 506);
    REQUIRE(ds.d == 13);
    CHECK(ds.x.size() == 506 * 13);
    CHECK(ds.feature_names.front() == "CRIM");
    CHECK(ds.feature_names.back() == "LSTAT");
    CHECK(ds.target_name == "MEDV");
    CHECK(ds.x[0] == 0.00632);
    CHECK(ds.x[12] == 4.98);
    CHECK(ds.y[0] == 24.0);
    CHECK(ds.y[505] == 11.9);  // the file's last row: ...,7.88,11.9
}

TEST_CASE("sklearn CSV loader accepts a small well-formed file (CRLF, trailing blank line)",
          "[data][tabular]") {
    const auto p = write_tmp("ok.csv", "3,2,,\r\n\"A\",\"B\",\"Y\"\r\n1,2,3\r\n4,5e-1,6\r\n-7,8,9\r\n\r\n");
    const auto ds = d::load_sklearn_csv(p);
    CHECK(ds.n == 3);
    CHECK(ds.d == 2);
    CHECK(ds.x == std::vector<double>{1, 2, 4, 0.5, -7, 8});
    CHECK(ds.y == std::vector<double>{3, 6, 9});
    CHECK(ds.feature_names == std::vector<std::string>{"A", "B"});
    fs::remove(p);
}

TEST_CASE("sklearn CSV loader rejects malformed files naming file, line and column", "[data][tabular]") {
    struct Case {
        std::string name, text, expect1, expect2;
    };
    const std::vector<Case> cases = {
        {"bad_number.csv", header + "1,2,3\n4,abc,6\n7,8,9\n", "line 4",
         "column 2 (B): 'abc' is not a finite number"},
        {"nan.csv", header + "1,2,3\n4,5,6\n7,nan,9\n", "line 5", "column 2 (B)"},
        {"empty_cell.csv", header + "1,,3\n4,5,6\n7,8,9\n", "line 3", "column 2 (B): '' is not"},
        {"short_row.csv", header + "1,2,3\n4,5\n7,8,9\n", "line 4", "2 cells, expected 3"},
        {"long_row.csv", header + "1,2,3\n4,5,6,7\n7,8,9\n", "line 4", "4 cells, expected 3"},
        {"too_few.csv", header + "1,2,3\n4,5,6\n", "ends after 2 data rows", "3 announced"},
        {"too_many.csv", header + "1,2,3\n4,5,6\n7,8,9\n1,1,1\n", "line 6", "more data rows"},
        {"bad_first.csv", "x,2\nA,B,Y\n", "line 1", "n_samples,n_features"},
        {"bad_names.csv", "3,2\nA,Y\n", "line 2", "2 column names, expected 3"},
        {"empty.csv", "", "line 1", "empty file"},
        // found by tests/fuzz/fuzz_csv: the announced count was reserved before any row was read
        {"huge_count.csv", "999999999999,2\nA,B,Y\n1,2,3\n", "line 1",
         "999999999999 rows of 3 cells announced, more than the file's 27 bytes can hold"},
        {"huge_width.csv", "999999,1\nA,Y\n1,2\n", "line 1", "more than the file's"},
    };
    for (const auto& c : cases) {
        const auto p = write_tmp(c.name, c.text);
        const auto msg = error_of(p);
        INFO(c.name << ": " << msg);
        CHECK(msg.find(p) != std::string::npos);
        CHECK(msg.find(c.expect1) != std::string::npos);
        CHECK(msg.find(c.expect2) != std::string::npos);
        fs::remove(p);
    }
    const auto missing = error_of("/nonexistent/boston.csv");
    CHECK(missing.find("/nonexistent/boston.csv") != std::string::npos);
    CHECK(missing.find("scripts/fetch-data") != std::string::npos);
}
