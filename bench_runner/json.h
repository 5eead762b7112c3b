// Minimal JSON value, reader and writer for the benchmark manifest/result.
//
// Written for this project (no third-party code): the manifest is a small,
// flat document, so a ~400 line recursive-descent parser is enough and keeps
// the runner free of external dependencies on Android and iOS.
//
// Numbers are kept as double plus an "is integer literal" flag so that the
// manifest validator can insist on integers where the protocol wants them.
// Objects keep their key order (vector of pairs); duplicate keys are rejected
// by the parser.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fbnet_bench {
namespace json {

class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& msg, size_t line, size_t column)
      : std::runtime_error(msg + " at line " + std::to_string(line) +
                           ", column " + std::to_string(column)),
        line_(line),
        column_(column) {}
  size_t line() const { return line_; }
  size_t column() const { return column_; }

 private:
  size_t line_;
  size_t column_;
};

class Value {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // null
  static Value null() { return Value(); }
  static Value boolean(bool b);
  static Value number(double d);
  static Value integer(int64_t i);
  static Value string(std::string s);
  static Value array(Array items = {});
  static Value object(Object members = {});

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  // True for numbers written without fraction/exponent, or doubles with an
  // integral value that fit in int64.
  bool is_integer() const;
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const { return bool_; }
  double as_double() const { return num_; }
  int64_t as_int() const;
  const std::string& as_string() const { return str_; }
  const Array& as_array() const { return arr_; }
  Array& as_array() { return arr_; }
  const Object& as_object() const { return obj_; }
  Object& as_object() { return obj_; }

  // Object helpers. find() returns nullptr when absent or not an object.
  const Value* find(const std::string& key) const;
  // Appends (or replaces) a member; turns a null value into an object.
  Value& set(const std::string& key, Value v);
  // Array helper; turns a null value into an array.
  Value& push(Value v);

  static const char* type_name(Type t);

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  bool int_literal_ = false;
  double num_ = 0.0;
  std::string str_;
  Array arr_;
  Object obj_;
};

// Parses a complete JSON document (RFC 8259; no comments, no trailing
// commas). Throws ParseError.
Value parse(const std::string& text);

// Serialises. indent < 0: compact; otherwise pretty-printed with that many
// spaces, except that arrays holding only numbers stay on one line.
// Non-finite numbers are written as null.
std::string dump(const Value& v, int indent = 2);

}  // namespace json
}  // namespace fbnet_bench
