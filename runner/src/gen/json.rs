//! A minimal append-only JSON writer for the generator.
//!
//! A payload is ~20,000 mostly-zero numbers; writing them straight into a reused
//! `Vec<u8>` (no `Value` tree, no `fmt` machinery for integers) keeps JSON
//! generation far below the cost of compression. Only trusted, generator-chosen
//! keys are written unescaped; all string values go through [`push_str`].

use std::io::Write;

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while v > 0 {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a signed integer.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends a finite double in Rust's shortest round-trip form (integral values
/// print without a fraction, like the real payloads' `0`).
pub fn push_f64(out: &mut Vec<u8>, v: f64) {
    debug_assert!(v.is_finite());
    let _ = write!(out, "{v}");
}

/// Appends a JSON string literal, escaping what JSON requires.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// An object being written; tracks the commas between members.
pub struct Obj<'a> {
    pub out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Writes `"key":`; the caller then writes the value.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub fn str(&mut self, key: &str, v: &str) {
        push_str(self.key(key), v);
    }

    pub fn uint(&mut self, key: &str, v: u64) {
        push_u64(self.key(key), v);
    }

    pub fn boolean(&mut self, key: &str, v: bool) {
        self.key(key)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// Writes `"key":` and opens a nested object.
    pub fn object(&mut self, key: &str) -> Obj<'_> {
        Obj::open(self.key(key))
    }

    pub fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json() {
        let mut out = Vec::new();
        let mut o = Obj::open(&mut out);
        o.uint("a", 1234567890123);
        o.str("s", "q\"\\\n\u{1}é");
        let mut inner = o.object("o");
        inner.boolean("t", true);
        push_i64(inner.key("n"), -2147443648);
        push_f64(inner.key("f"), 29.152278900146484);
        push_f64(inner.key("z"), 0.0);
        inner.close();
        o.close();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["a"], 1234567890123u64);
        assert_eq!(v["s"], "q\"\\\n\u{1}é");
        assert_eq!(v["o"]["n"], -2147443648i64);
        assert_eq!(v["o"]["f"], 29.152278900146484);
        assert!(std::str::from_utf8(&out).unwrap().contains("\"z\":0}"));
    }
}
