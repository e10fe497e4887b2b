//! The few Python semantics upstream's prepro relies on, spelled out: `str.isspace`,
//! `str.strip`, `str.split()`, `re.sub(r"\s+", " ", …)`, `\d`, text-mode reading (universal
//! newlines), `os.path.join`, `str()` of a JSON value and list slicing.
use std::path::Path;

use crate::{Error, Result};

/// `str.isspace` (and `\s` of `re` on `str` patterns): Unicode's White_Space plus the four
/// ASCII separators U+001C..U+001F, which Python counts and Rust's `char::is_whitespace` does not.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `s.split()`: runs of whitespace separate, empty pieces dropped.
pub fn split_ws(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `len(s.split())`.
pub fn word_count(s: &str) -> usize {
    split_ws(s).count()
}

/// `re.sub(r"\s+", " ", s)`.
pub fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if is_space(c) {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// Unicode category Nd (what `\d` matches in a `str` pattern), Unicode 14 as in CPython 3.11.
const ND: [(u32, u32); 62] = [
    (0x30, 0x39), (0x660, 0x669), (0x6F0, 0x6F9), (0x7C0, 0x7C9), (0x966, 0x96F), (0x9E6, 0x9EF), (0xA66, 0xA6F),
    (0xAE6, 0xAEF), (0xB66, 0xB6F), (0xBE6, 0xBEF), (0xC66, 0xC6F), (0xCE6, 0xCEF), (0xD66, 0xD6F), (0xDE6, 0xDEF),
    (0xE50, 0xE59), (0xED0, 0xED9), (0xF20, 0xF29), (0x1040, 0x1049), (0x1090, 0x1099), (0x17E0, 0x17E9),
    (0x1810, 0x1819), (0x1946, 0x194F), (0x19D0, 0x19D9), (0x1A80, 0x1A89), (0x1A90, 0x1A99), (0x1B50, 0x1B59),
    (0x1BB0, 0x1BB9), (0x1C40, 0x1C49), (0x1C50, 0x1C59), (0xA620, 0xA629), (0xA8D0, 0xA8D9), (0xA900, 0xA909),
    (0xA9D0, 0xA9D9), (0xA9F0, 0xA9F9), (0xAA50, 0xAA59), (0xABF0, 0xABF9), (0xFF10, 0xFF19), (0x104A0, 0x104A9),
    (0x10D30, 0x10D39), (0x11066, 0x1106F), (0x110F0, 0x110F9), (0x11136, 0x1113F), (0x111D0, 0x111D9),
    (0x112F0, 0x112F9), (0x11450, 0x11459), (0x114D0, 0x114D9), (0x11650, 0x11659), (0x116C0, 0x116C9),
    (0x11730, 0x11739), (0x118E0, 0x118E9), (0x11950, 0x11959), (0x11C50, 0x11C59), (0x11D50, 0x11D59),
    (0x11DA0, 0x11DA9), (0x16A60, 0x16A69), (0x16AC0, 0x16AC9), (0x16B50, 0x16B59), (0x1D7CE, 0x1D7FF),
    (0x1E140, 0x1E149), (0x1E2F0, 0x1E2F9), (0x1E950, 0x1E959), (0x1FBF0, 0x1FBF9),
];

/// `\d` on a `str` pattern: a decimal digit of any script.
pub fn is_digit(c: char) -> bool {
    let c = c as u32;
    ND.iter().any(|&(a, b)| (a..=b).contains(&c))
}

/// A file read as `open(path).read()` does: UTF-8, `\r\n` and `\r` turned into `\n`.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::prepare(path, 0, format!("not UTF-8 at byte {at} (upstream reads it as UTF-8 text)"))
    })?;
    Ok(if text.contains('\r') { text.replace("\r\n", "\n").replace('\r', "\n") } else { text })
}

/// The lines of a text as `for line in fp` yields them, without their `\n`, numbered from 1.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let none = text.is_empty();
    body.split('\n').enumerate().filter(move |_| !none).map(|(i, l)| (i + 1, l))
}

/// `text.strip().split("\n")` (how upstream reads JSONL and VQA-Med files), each piece with
/// its line number in `text`.
pub fn stripped_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let leading = text.len() - text.trim_start_matches(is_space).len();
    let first = text[..leading].matches('\n').count() + 1;
    strip(text).split('\n').enumerate().map(move |(i, l)| (first + i, l))
}

/// `os.path.join(a, b)` for POSIX paths.
pub fn path_join(a: &str, b: &str) -> String {
    if b.starts_with('/') || a.is_empty() {
        b.to_string()
    } else if a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

/// `str(value)` of what `json.load` returns: a string as is, `True`/`False`/`None`, an int in
/// decimal, a float as `repr`. Lists and objects are refused (their Python repr is not ported).
pub fn str_of(value: &serde_json::Value) -> std::result::Result<String, String> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => float_repr(f),
            _ => return Err(format!("number {n} is not representable")),
        },
        Value::Array(_) | Value::Object(_) => return Err(format!("{value} is a list or object, not a string or number")),
    })
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for decimal exponents
/// -4..=15 (with at least one digit after the point), scientific otherwise (`1e+16`, `1.5e-05`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if exp + 1 >= n {
            format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
        } else {
            format!("{}.{}", &digits[..(exp + 1) as usize], &digits[(exp + 1) as usize..])
        };
        format!("{sign}{body}")
    } else {
        let rest = &digits[1..];
        let m = if rest.is_empty() { digits[..1].to_string() } else { format!("{}.{}", &digits[..1], rest) };
        let e = if exp < 0 { format!("-{:02}", -exp) } else { format!("+{exp:02}") };
        format!("{sign}{m}e{e}")
    }
}

/// `x[start:stop]` with Python's clamping of negative and out-of-range bounds.
pub fn slice<T>(x: &[T], start: Option<i64>, stop: Option<i64>) -> &[T] {
    let n = x.len() as i64;
    let at = |i: i64| if i < 0 { (n + i).max(0) } else { i.min(n) } as usize;
    let (a, b) = (start.map_or(0, at), stop.map_or(n as usize, at));
    if a >= b { &x[0..0] } else { &x[a..b] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_semantics() {
        assert_eq!(strip("\u{1c} a b\u{a0}\n"), "a b");
        assert_eq!(collapse_ws("a \t\u{1f} b  c\n"), "a b c ");
        assert_eq!(word_count(" a\u{3000}b "), 2);
        assert_eq!(path_join("data/x//images", "a.jpg"), "data/x//images/a.jpg");
        assert_eq!(path_join("data/x/", "a.jpg"), "data/x/a.jpg");
        assert_eq!(path_join("data/x/", "/abs.jpg"), "/abs.jpg");
        for (f, s) in [(3.0, "3.0"), (0.1, "0.1"), (1e16, "1e+16"), (1.5e-5, "1.5e-05"), (123456.5, "123456.5"), (1e-4, "0.0001"), (-2.5, "-2.5"), (1234567890123456.0, "1234567890123456.0")] {
            assert_eq!(float_repr(f), s);
        }
        let x = [0, 1, 2, 3, 4];
        assert_eq!(slice(&x, None, Some(-2000)), &[] as &[i32]);
        assert_eq!(slice(&x, Some(-2000), Some(-1000)), &[] as &[i32]);
        assert_eq!(slice(&x, Some(-3), Some(-1)), &[2, 3]);
        assert_eq!(lines("a\nb\n").collect::<Vec<_>>(), vec![(1, "a"), (2, "b")]);
        assert_eq!(lines("").count(), 0);
        assert!(is_digit('٣') && !is_digit('²') && !is_digit('a'));
    }
}
