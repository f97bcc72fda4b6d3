//! SCIM filters (RFC 7644 §3.4.2.2): parsed into an expression, then matched against a
//! resource's JSON. Written here rather than taken from a crate: the two on crates.io were one
//! undocumented parser last released in January 2024 (nom 7, rust_decimal, a second thiserror)
//! and a models crate whose types differ from what we store; the grammar is small.
//!
//! Attribute names match case-insensitively, and so do string values (our attributes are all
//! `caseExact: false` but `id`, whose values are lower-case UUIDs anyway). A multi-valued
//! attribute matches when any of its values does.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `emails[type eq "work" and value co "@example.com"]`: some value of the attribute matches.
    Value(AttrPath, Box<Filter>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// An attribute and optionally one of its sub-attributes, lower-cased, any schema URN dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Parses `name`, `name.sub` or `urn:...:User:name.sub`.
    pub fn parse(raw: &str) -> ApiResult<AttrPath> {
        let raw = raw.trim();
        // A URN prefix ends at the last ':' (attribute names have none).
        let name = if raw.to_ascii_lowercase().starts_with("urn:") { raw.rsplit(':').next().unwrap_or_default() } else { raw };
        let (attr, sub) = match name.split_once('.') {
            Some((a, s)) => (a, Some(s)),
            None => (name, None),
        };
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
        if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
            return Err(invalid(format!("{raw:?} is not an attribute path such as userName or emails.value")));
        }
        Ok(AttrPath { attr: attr.to_ascii_lowercase(), sub: sub.map(str::to_ascii_lowercase) })
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalidFilter", message)
}

/// The longest filter we parse: IdPs send short ones, and nesting is bounded by it.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

pub fn parse(text: &str) -> ApiResult<Filter> {
    if text.len() > MAX_LEN {
        return Err(invalid(format!("the filter is longer than {MAX_LEN} characters")));
    }
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, at: 0, depth: 0 };
    let filter = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(filter),
        Some(t) => Err(invalid(format!("unexpected {t:?} after the end of the filter"))),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Literal(Value),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn lex(text: &str) -> ApiResult<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' | ')' | '[' | ']' => {
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
                i += 1;
            }
            '"' => {
                // A JSON string: find its closing quote, skipping escaped characters.
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Err(invalid("a string in the filter has no closing quote".into()));
                }
                i += 1;
                let literal: String = chars[start..i].iter().collect();
                let value = serde_json::from_str(&literal).map_err(|e| invalid(format!("{literal} is not a valid JSON string: {e}")))?;
                out.push(Token::Literal(value));
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '(' | ')' | '[' | ']' | '"') {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, token: Token, what: &str) -> ApiResult<()> {
        if self.tokens.get(self.at) == Some(&token) {
            self.at += 1;
            Ok(())
        } else {
            Err(invalid(format!("expected {what} in the filter")))
        }
    }

    fn or(&mut self) -> ApiResult<Filter> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!("the filter nests deeper than {MAX_DEPTH} levels")));
        }
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> ApiResult<Filter> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> ApiResult<Filter> {
        if self.peek_word("not") {
            self.at += 1;
            self.expect(Token::Open, "( after not")?;
            let inner = self.or()?;
            self.expect(Token::Close, "a closing )")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.tokens.get(self.at) == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close, "a closing )")?;
            return Ok(inner);
        }
        self.attribute_expression()
    }

    fn attribute_expression(&mut self) -> ApiResult<Filter> {
        let Some(Token::Word(name)) = self.tokens.get(self.at).cloned() else {
            return Err(invalid("expected an attribute name in the filter".into()));
        };
        self.at += 1;
        let path = AttrPath::parse(&name)?;
        if self.tokens.get(self.at) == Some(&Token::OpenBracket) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::CloseBracket, "a closing ]")?;
            return Ok(Filter::Value(path, Box::new(inner)));
        }
        let Some(Token::Word(op)) = self.tokens.get(self.at).cloned() else {
            return Err(invalid(format!("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after {name}")));
        };
        self.at += 1;
        let op = match op.to_ascii_lowercase().as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(invalid(format!("{other:?} is not a filter operator; use eq, ne, co, sw, ew, gt, ge, lt, le or pr"))),
        };
        let value = match self.tokens.get(self.at).cloned() {
            Some(Token::Literal(v)) => v,
            Some(Token::Word(w)) => match w.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                number => serde_json::from_str::<serde_json::Number>(number)
                    .map(Value::Number)
                    .map_err(|_| invalid(format!("{number:?} is not a value: quote strings (\"...\"), or use true, false, null or a number")))?,
            },
            _ => return Err(invalid(format!("expected a value after {name} {op:?}"))),
        };
        self.at += 1;
        Ok(Filter::Compare(path, op, value))
    }
}

/// The value of `key` in `object`, its name compared case-insensitively.
pub fn field<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// Every value the path names in `resource` (a multi-valued attribute gives several).
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = field(resource, &path.attr) else { return vec![] };
    let items: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &path.sub {
        None => items,
        Some(sub) => items.into_iter().filter_map(|item| field(item, sub)).flat_map(|v| v.as_array().map_or_else(|| vec![v], |a| a.iter().collect())).collect(),
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(actual: &Value, op: Op, expected: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = (a.to_lowercase(), e.to_lowercase());
            match op {
                Op::Co => return a.contains(&e),
                Op::Sw => return a.starts_with(&e),
                Op::Ew => return a.ends_with(&e),
                // Timestamps are RFC 3339 in UTC, so they order as strings do.
                _ => a.cmp(&e),
            }
        }
        (Value::Number(a), Value::Number(e)) => match (a.as_f64(), e.as_f64()) {
            (Some(a), Some(e)) => a.partial_cmp(&e).unwrap_or(Ordering::Less),
            _ => return false,
        },
        (Value::Bool(a), Value::Bool(e)) if matches!(op, Op::Eq | Op::Ne) => a.cmp(e),
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

/// Whether `resource` matches `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::Present(path) => values(resource, path).into_iter().any(present),
        // `ne` holds when no value equals (an absent attribute is not equal to anything).
        Filter::Compare(path, Op::Ne, expected) => !values(resource, path).into_iter().any(|v| compare(v, Op::Eq, expected)),
        Filter::Compare(path, op, expected) => values(resource, path).into_iter().any(|v| compare(v, *op, expected)),
        Filter::Value(path, inner) => {
            let scoped = AttrPath { attr: path.attr.clone(), sub: None };
            values(resource, &scoped).into_iter().any(|item| matches(inner, item))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "Bjensen@example.com",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@home.org", "type": "home"}],
            "meta": {"lastModified": "2026-01-02T03:04:05Z"}
        })
    }

    fn check(filter: &str) -> bool {
        matches(&parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}")), &user())
    }

    #[test]
    fn operators_match_as_rfc_7644_says() {
        assert!(check(r#"userName eq "bjensen@example.com""#), "string comparison ignores case");
        assert!(check(r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#), "so do names and operators");
        assert!(!check(r#"userName ne "bjensen@example.com""#));
        assert!(check(r#"userName co "jensen""#));
        assert!(check(r#"userName sw "bj""#));
        assert!(check(r#"userName ew ".com""#));
        assert!(check("name.givenName pr"));
        assert!(!check("displayName pr"));
        assert!(check("active eq true"));
        assert!(!check("active eq false"));
        assert!(check(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(!check(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#));
        assert!(check(r#"emails.value eq "babs@home.org""#), "any value of a multi-valued attribute");
        assert!(check(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bjensen""#));
    }

    #[test]
    fn logic_grouping_and_value_filters_combine() {
        assert!(check(r#"userName sw "x" or name.familyName eq "jensen""#));
        assert!(!check(r#"userName sw "b" and not (active eq true)"#));
        assert!(check(r#"(userName sw "x" or active eq true) and name.givenName co "arb""#));
        assert!(check(r#"emails[type eq "work" and value co "example.com"]"#));
        assert!(!check(r#"emails[type eq "home" and value co "example.com"]"#));
        // `and` binds tighter than `or`.
        assert!(check(r#"active eq true or userName eq "x" and active eq false"#));
    }

    #[test]
    fn malformed_filters_are_refused_with_invalid_filter() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName xx "a""#,
            r#"userName eq "open"#,
            "(active eq true",
            "not active eq true",
            "userName eq bare",
            "a..b pr",
            "emails[type eq \"work\"",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.code(), "invalidFilter", "{bad}");
        }
        let deep = format!("{}active eq true{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).is_err(), "nesting is bounded");
    }
}
