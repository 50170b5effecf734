//! Package URLs, as CycloneDX and SPDX documents carry them.
//! Law: rendering a parsed purl with every component percent-encoded parses back to the same
//! purl (for purls whose namespace and subpath segments survive the split on `/`, which the
//! struct's joined form cannot otherwise express).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_inventory::Purl;

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn render(p: &Purl) -> String {
    let mut s = format!("pkg:{}/", p.ty);
    for seg in p.namespace.split('/').filter(|s| !s.is_empty()) {
        s.push_str(&encode(seg));
        s.push('/');
    }
    s.push_str(&encode(&p.name));
    if let Some(v) = &p.version {
        s.push('@');
        s.push_str(&encode(v));
    }
    if !p.qualifiers.is_empty() {
        let q: Vec<String> = p
            .qualifiers
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        s.push('?');
        s.push_str(&q.join("&"));
    }
    if let Some(sp) = &p.subpath {
        s.push('#');
        let segs: Vec<String> = sp.split('/').map(encode).collect();
        s.push_str(&segs.join("/"));
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = match Purl::parse(text) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(!p.name.is_empty());
    assert_eq!(p.ty, p.ty.to_ascii_lowercase());
    let namespace_ok = p.namespace.is_empty() || p.namespace.split('/').all(|s| !s.is_empty());
    let subpath_ok = p.subpath.as_deref().is_none_or(|sp| {
        sp.split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
    });
    if namespace_ok && subpath_ok {
        let rendered = render(&p);
        assert_eq!(
            Purl::parse(&rendered).as_ref(),
            Ok(&p),
            "parse(render(p)) == p for {rendered:?}"
        );
    }
});
