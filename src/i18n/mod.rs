//! Message catalogs: Chinese (default) and English.
//!
//! Catalogs are TOML files `locales/<lang>/<domain>.toml`, embedded at build time by `build.rs`
//! (adding a file needs no code change). A key `title` in `locales/en/accounts.toml` is looked
//! up as `accounts.title`; nested tables add more dotted segments. Values may hold `{name}`
//! placeholders, filled by [`t_args`]. Both languages must define the same keys (a unit test
//! checks it). A missing key renders as the key itself, so it is visible on the page.
//!
//! The language of a request is the `lang` cookie (set by `/lang/{code}`), else the best match
//! of `Accept-Language`, else Chinese.

use std::collections::HashMap;
use std::sync::LazyLock;

include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// A supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    /// 中文 (default).
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// All supported languages.
    pub const ALL: [Lang; 2] = [Lang::Zh, Lang::En];

    /// The code used in cookies, URLs and `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `<html lang>` attribute value.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// Parses a language code (`zh`, `en`, or a tag such as `zh-CN`, `en-GB`).
    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The supported language with the highest quality in an `Accept-Language` header.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',').take(32) {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_code(tag)
                && q > 0.0
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }
}

static CATALOGS: LazyLock<HashMap<Lang, HashMap<String, String>>> = LazyLock::new(|| {
    let mut all: HashMap<Lang, HashMap<String, String>> = HashMap::new();
    for (lang, domain, text) in CATALOG_FILES {
        let Some(lang) = Lang::from_code(lang) else {
            continue;
        };
        let table: toml::Table = toml::from_str(text)
            .unwrap_or_else(|e| panic!("message catalog {lang:?}/{domain}.toml is invalid: {e}"));
        let map = all.entry(lang).or_default();
        flatten(domain, &toml::Value::Table(table), map);
    }
    all
});

fn flatten(prefix: &str, value: &toml::Value, out: &mut HashMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// A text given in both languages, in `lang` (the other language's when it is empty).
pub fn pick<'a>(lang: Lang, zh: &'a str, en: &'a str) -> &'a str {
    match lang {
        Lang::Zh if !zh.is_empty() => zh,
        Lang::En if !en.is_empty() => en,
        Lang::Zh => en,
        Lang::En => zh,
    }
}

/// The message for `key` in `lang` (the key itself when it is missing).
pub fn t(lang: Lang, key: &str) -> &str {
    match CATALOGS.get(&lang).and_then(|m| m.get(key)) {
        Some(s) => s.as_str(),
        None => key,
    }
}

/// The message for `key` with `{name}` placeholders replaced by `args`.
pub fn t_args(lang: Lang, key: &str, args: &[(&str, String)]) -> String {
    let mut s = t(lang, key).to_owned();
    for (name, value) in args {
        s = s.replace(&format!("{{{name}}}"), value);
    }
    s
}

/// Every key of `lang` starting with `prefix` (in no particular order).
pub fn keys_with_prefix(lang: Lang, prefix: &str) -> Vec<&'static str> {
    CATALOGS
        .get(&lang)
        .map(|m| {
            m.keys()
                .filter(|k| k.starts_with(prefix))
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `key` exists in the catalog of `lang`.
pub fn has_key(lang: Lang, key: &str) -> bool {
    CATALOGS.get(&lang).is_some_and(|m| m.contains_key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let zh = &CATALOGS[&Lang::Zh];
        let en = &CATALOGS[&Lang::En];
        let mut missing: Vec<String> = zh
            .keys()
            .filter(|k| !en.contains_key(*k))
            .map(|k| format!("en lacks {k}"))
            .chain(
                en.keys()
                    .filter(|k| !zh.contains_key(*k))
                    .map(|k| format!("zh lacks {k}")),
            )
            .collect();
        missing.sort();
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn accept_language_negotiation() {
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Some(Lang::En));
        assert_eq!(
            Lang::from_accept_language("fr, en;q=0.5, zh-CN;q=0.8"),
            Some(Lang::Zh)
        );
        assert_eq!(Lang::from_accept_language("fr, de"), None);
        assert_eq!(Lang::from_accept_language("en;q=0"), None);
    }

    #[test]
    fn placeholders_and_missing_keys() {
        assert_eq!(t(Lang::En, "no.such.key"), "no.such.key");
        assert!(has_key(Lang::En, "common.app_name"));
        assert_eq!(t_args(Lang::En, "no.{x}", &[("x", "1".into())]), "no.1");
    }
}
