//! Issue #24, item 7: every word the POS shows comes from its message
//! catalogues, and English and German are complete. Fails when a key is
//! missing from either catalogue, a catalogue key is used nowhere, the
//! two disagree on a key's {placeholders}, or the screens' script or page
//! holds text of their own instead of a catalogue key.

use std::collections::{BTreeMap, BTreeSet};

use pos_agent::web::CATALOGUES;

const SCRIPT: &str = include_str!("../assets/app.js");
const PAGE: &str = include_str!("../assets/index.html");
const STYLE: &str = include_str!("../assets/app.css");

/// Literals the script may hold that read like words but are not shown:
/// the HTTP auth scheme and the script's strict-mode directive.
const NOT_SHOWN: &[&str] = &["Bearer ", "use strict"];

fn catalogue(lang: &str) -> BTreeMap<String, String> {
    let (_, text) = CATALOGUES
        .iter()
        .find(|(l, _)| *l == lang)
        .unwrap_or_else(|| panic!("no {lang} catalogue"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{lang}.json: {e}"))
}

fn placeholders(text: &str) -> BTreeSet<String> {
    text.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(p, _)| p.to_owned()))
        .collect()
}

/// The script's string literals, outside comments.
fn literals(js: &str) -> Vec<String> {
    let b = js.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            q @ (b'"' | b'\'' | b'`') => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.push(js[start..i].to_owned());
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn is_key(s: &str) -> bool {
    let mut parts = s.split('.');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    !first.is_empty()
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !rest.is_empty()
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Class names the style sheet defines: a literal made of them is a
/// class list, not text.
fn classes() -> BTreeSet<String> {
    STYLE
        .split('.')
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// Would a person read this literal on screen? A capitalised word, or
/// several words that are not a class list.
fn reads_as_text(s: &str, classes: &BTreeSet<String>) -> bool {
    let capitalised = s
        .as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_lowercase());
    let words: Vec<&str> = s.split_whitespace().collect();
    let sentence = words.len() > 1
        && words
            .iter()
            .any(|w| w.bytes().any(|b| b.is_ascii_alphabetic()))
        && !words.iter().all(|w| classes.contains(*w));
    capitalised || sentence
}

#[test]
fn english_and_german_have_the_same_keys_and_placeholders() {
    let en = catalogue("en");
    let de = catalogue("de");
    let only_en: Vec<&String> = en.keys().filter(|k| !de.contains_key(*k)).collect();
    let only_de: Vec<&String> = de.keys().filter(|k| !en.contains_key(*k)).collect();
    assert!(only_en.is_empty(), "missing in de.json: {only_en:?}");
    assert!(only_de.is_empty(), "missing in en.json: {only_de:?}");
    for (k, v) in &en {
        assert!(!v.trim().is_empty(), "en.json {k} is empty");
        assert!(!de[k].trim().is_empty(), "de.json {k} is empty");
        assert_eq!(
            placeholders(v),
            placeholders(&de[k]),
            "{k}: en and de fill in different things"
        );
    }
}

#[test]
fn every_word_on_screen_is_a_catalogue_key_and_every_key_is_used() {
    let en = catalogue("en");
    let classes = classes();
    let mut used = BTreeSet::new();
    let mut text = Vec::new();
    for lit in literals(SCRIPT) {
        if is_key(&lit) {
            // `tn(key, n)` picks `key.one` or `key.other`.
            let plural = [format!("{lit}.one"), format!("{lit}.other")];
            if en.contains_key(&lit) {
                used.insert(lit);
            } else if plural.iter().all(|p| en.contains_key(p)) {
                used.extend(plural);
            } else {
                panic!("app.js uses {lit:?}, which is in no catalogue");
            }
        } else if reads_as_text(&lit, &classes) && !NOT_SHOWN.contains(&lit.as_str()) {
            text.push(lit);
        }
    }
    assert!(
        text.is_empty(),
        "app.js shows text that is not in the catalogues (use t(\"key\")): {text:?}"
    );

    // The page's own words carry data-i18n="key" (the script fills them in).
    let body = PAGE.split("<body>").nth(1).expect("index.html has a body");
    for (i, segment) in body.split('<').enumerate().skip(1) {
        let (tag, words) = segment.split_once('>').unwrap_or((segment, ""));
        if words.trim().chars().any(char::is_alphabetic) {
            assert!(
                tag.contains("data-i18n="),
                "index.html text {:?} (element {i}) has no data-i18n key",
                words.trim()
            );
        }
        if let Some(key) = tag.split("data-i18n=\"").nth(1) {
            let key = key.split('"').next().unwrap_or_default();
            assert!(
                en.contains_key(key),
                "index.html uses {key:?}, in no catalogue"
            );
            used.insert(key.to_owned());
        }
    }
    if let Some(key) = PAGE
        .split("<title data-i18n=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
    {
        used.insert(key.to_owned());
    }
    let unused: Vec<&String> = en.keys().filter(|k| !used.contains(*k)).collect();
    assert!(unused.is_empty(), "catalogue keys nothing uses: {unused:?}");
}

/// The check itself: a word written into the script is caught, a class
/// list and a key are not.
#[test]
fn text_in_the_script_is_told_from_keys_and_class_lists() {
    let classes = classes();
    assert!(reads_as_text("Sign in", &classes));
    assert!(reads_as_text("Close", &classes));
    assert!(reads_as_text("in 5 min", &classes));
    assert!(!reads_as_text("key go", &classes));
    assert!(!reads_as_text("content-type", &classes));
    assert!(is_key("sheet.close") && !is_key("app.js ok"));
    assert_eq!(
        literals("x(\"a\"); // \"not\"\n/* 'no' */ y('b', `c`)"),
        ["a", "b", "c"]
    );
}
