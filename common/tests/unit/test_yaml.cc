// Unit tests for common/src/yaml.c: YAML text to the jansson tree JSON would
// give, and errors that say where.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
#include "ota/yaml.h"
}

namespace
{

std::string dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    std::string out = s ? s : "(null)";
    free(s);
    return out;
}

// Parses yaml, expects success and a tree equal (types included) to json.
void expect_yaml(const std::string &yaml, const char *json)
{
    struct ota_err err = {};
    json_t *got = nullptr;
    json_error_t jerr;
    json_t *want = json_loads(json, JSON_DECODE_ANY, &jerr);

    ASSERT_NE(want, nullptr) << "bad expectation: " << json << ": " << jerr.text;
    ASSERT_EQ(ota_yaml_to_json(yaml.data(), yaml.size(), &got, &err), 0)
        << yaml << "\n-> " << err.reason;
    ASSERT_NE(got, nullptr);
    EXPECT_TRUE(json_equal(got, want)) << yaml << "\ngot  " << dump(got) << "\nwant " << dump(want);
    json_decref(got);
    json_decref(want);
}

// Parses yaml, expects code and returns the reason; *ret stays untouched.
std::string expect_fail(const std::string &yaml, int code)
{
    struct ota_err err = {};
    json_t *sentinel = json_object();
    json_t *got = sentinel;
    int r = ota_yaml_to_json(yaml.data(), yaml.size(), &got, &err);

    EXPECT_EQ(r, -code) << yaml << "\n-> " << err.reason;
    EXPECT_EQ(got, sentinel) << "ret written on failure";
    if (got != sentinel)
        json_decref(got);
    json_decref(sentinel);
    return err.reason;
}

} // namespace

TEST(Yaml, MappingsAndSequences)
{
    expect_yaml("a: 1\nb: {c: [x, y]}\n", R"({"a":1,"b":{"c":["x","y"]}})");
    expect_yaml("- a\n- - 1\n  - 2\n- k: v\n  l: []\n", R"(["a",[1,2],{"k":"v","l":[]}])");
    expect_yaml("outer:\n  inner:\n    - {}\n    - []\n", R"({"outer":{"inner":[{},[]]}})");
    expect_yaml("[1, [2, [3]]]", "[1,[2,[3]]]");
    // Key order is kept as written.
    struct ota_err err = {};
    json_t *v = nullptr;
    const char *text = "z: 1\na: 2\nm: 3\n";
    ASSERT_EQ(ota_yaml_to_json(text, strlen(text), &v, &err), 0) << err.reason;
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    EXPECT_STREQ(s, R"({"z":1,"a":2,"m":3})");
    free(s);
    json_decref(v);
}

TEST(Yaml, ScalarsTypedAsJson)
{
    expect_yaml("[0, 42, -7, +12, 0x1F, 0o17, 9223372036854775807, -9223372036854775808]",
                "[0,42,-7,12,31,15,9223372036854775807,-9223372036854775808]");
    expect_yaml("[1.5, -0.25, .5, 1e3, 2.5E-1, 3.]", "[1.5,-0.25,0.5,1000.0,0.25,3.0]");
    expect_yaml("[true, True, TRUE, false, False, FALSE]", "[true,true,true,false,false,false]");
    expect_yaml("a: null\nb: ~\nc:\nd: Null\n", R"({"a":null,"b":null,"c":null,"d":null})");
    // Quoted scalars stay strings, whatever they look like.
    expect_yaml(R"(["1", '2.5', "true", 'null', "", '~'])", R"(["1","2.5","true","null","","~"])");
    // Plain words and near-numbers are strings.
    expect_yaml("[yes, no, on, 1e, 0x, 1.2.3, .inf, 12abc, hello world]",
                R"(["yes","no","on","1e","0x","1.2.3",".inf","12abc","hello world"])");
    // Block scalars are strings.
    expect_yaml("a: |\n  two\n  lines\nb: >\n  folded\n  text\n",
                R"({"a":"two\nlines\n","b":"folded text\n"})");
    // A document may be a bare scalar.
    expect_yaml("42\n", "42");
    expect_yaml("---\nhello\n...\n", R"("hello")");
}

TEST(Yaml, ExplicitTags)
{
    expect_yaml("[!!str 12, !!int '7', !!float 3, !!bool 'true', !!null '', ! 5]",
                R"(["12",7,3.0,true,null,"5"])");
    expect_yaml("a: !!map {b: !!seq [1]}\n", R"({"a":{"b":[1]}})");
    EXPECT_NE(expect_fail("a: !!bool 5\n", EINVAL).find("does not fit its tag"), std::string::npos);
    EXPECT_NE(expect_fail("a: !foo 5\n", EINVAL).find("unsupported tag '!foo'"), std::string::npos);
    EXPECT_NE(expect_fail("a: !!set {}\n", EINVAL).find("unsupported tag"), std::string::npos);
}

TEST(Yaml, AnchorsAndAliases)
{
    expect_yaml("base: &b {x: 1, y: [2]}\ncopy: *b\nname: &n joe\nagain: *n\n",
                R"({"base":{"x":1,"y":[2]},"copy":{"x":1,"y":[2]},"name":"joe","again":"joe"})");
    // The latest definition of a name wins.
    expect_yaml("- &a 1\n- *a\n- &a 2\n- *a\n", "[1,1,2,2]");
    EXPECT_NE(expect_fail("a: *nope\n", EINVAL).find("unknown anchor 'nope'"), std::string::npos);
    // An alias cannot point into the collection that defines it.
    EXPECT_NE(expect_fail("a: &x [1, *x]\n", EINVAL).find("unknown anchor 'x'"), std::string::npos);
    EXPECT_NE(expect_fail("a: &k x\n*k : 1\n", EINVAL).find("mapping keys must be scalars"),
              std::string::npos);
}

TEST(Yaml, ErrorsSayWhere)
{
    std::string r = expect_fail("a: 1\nb: [1, 2\nc: 3\n", EINVAL);
    EXPECT_EQ(r.rfind("YAML line ", 0), 0u) << r;
    r = expect_fail("a: 1\nb: 2\na: 3\n", EINVAL);
    EXPECT_NE(r.find("YAML line 3 column 1: duplicate key 'a'"), std::string::npos) << r;
    r = expect_fail("a:\n  - 1\n  b: 2\n", EINVAL);
    EXPECT_NE(r.find("YAML line 3 column"), std::string::npos) << r;
    r = expect_fail("{a: 1}: 2\n", EINVAL);
    EXPECT_NE(r.find("mapping keys must be scalars"), std::string::npos) << r;
    r = expect_fail(std::string("a: \"x\\0y\"\n"), EINVAL);
    EXPECT_NE(r.find("NUL"), std::string::npos) << r;
    r = expect_fail("a: " + std::string(100, '[') + std::string(100, ']') + "\n", EINVAL);
    EXPECT_NE(r.find("nested too deeply"), std::string::npos) << r;
    r = expect_fail("a: 99999999999999999999\n", EINVAL);
    EXPECT_NE(r.find("integer out of range"), std::string::npos) << r;
}

TEST(Yaml, DocumentCount)
{
    std::string r = expect_fail("", ENODATA);
    EXPECT_NE(r.find("no document"), std::string::npos) << r;
    expect_fail("# only a comment\n\n", ENODATA);
    r = expect_fail("a: 1\n---\nb: 2\n", E2BIG);
    EXPECT_NE(r.find("YAML line 2 column 1: more than one document"), std::string::npos) << r;
}

TEST(Yaml, TooManyAnchors)
{
    std::string text;
    for (int i = 0; i < 300; i++)
        text += "- &a" + std::to_string(i) + " " + std::to_string(i) + "\n";
    std::string r = expect_fail(text, EINVAL);
    EXPECT_NE(r.find("too many anchors"), std::string::npos) << r;
}
