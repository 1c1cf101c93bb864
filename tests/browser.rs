//! Each role's main story in a real browser (Debian's Chromium, headless, driven through
//! chromedriver by WebDriver), first in Chinese and then, after the language switch, in English:
//! an enterprise registers and the platform verifies it; it applies to the demo call (with an
//! attachment); the regulator assigns the expert, the expert gives an opinion, the regulator
//! approves; the public notice shows it and, once its period has passed, the admission; the
//! regulator drafts the agreement, the operator signs, the regulator seals, anyone verifies it;
//! `alpha` submits example job (a) by uploading its module file through the form, watches the
//! job page follow its state without a reload (the page's script follows `/jobs/{id}/events`;
//! the operator's bar shows no figure while it runs), the reviewer releases the output and
//! `alpha` downloads the CSV.
//!
//! The test clicks links and submits forms found by their label or visible text (taken from
//! the locale files, so both languages run the same steps), so it fails when a page's form,
//! link or script breaks; after every page it asks Chromium's log for JavaScript errors and
//! failed requests and checks that every stylesheet loaded. Only what no page does is done
//! in-process: moving the clock past the notice period and running the scheduler (as
//! `tests/admission_to_exit.rs` does), and the worker's part of the run.
//!
//! Runs only with `--features browser-tests`; then a missing `chromium` or `chromedriver` is a
//! failure naming the Debian packages. SQLite by default; PostgreSQL when
//! `DATAOP_TEST_POSTGRES_URL` is set.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataop::i18n::{self, Lang};
use dataop::jobs::worker;
use diesel::prelude::*;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

mod common;

use common::{DEMO_PASSWORD, TestApp};

/// How long a page may take to show what a step waits for (a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(30);
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
const MODULE: &str = "sandbox/guest/examples/a_visits_65plus.wat";
const MANIFEST: &str = "sandbox/guest/examples/a_visits_65plus.toml";

/// The absolute path of a program on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// A chromedriver process on a free loopback port; stopped (with the browsers it started) when
/// dropped, also when the test panics.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let exe = on_path("chromedriver").unwrap_or_else(|| {
            panic!(
                "chromedriver not found on PATH: the browser tests need Debian's packages \
                 `chromium` and `chromium-driver` (apt-get install chromium chromium-driver)"
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(exe)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start chromedriver")
        };
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let until = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole process group: chromedriver and any browser it left behind.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Chromium's log (`POST /session/{id}/se/log`): the entries since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// A literal for an XPath expression, whatever quotes `s` holds.
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// One headless Chromium session, driven step by step from synchronous test code.
struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    base: String,
    lang: Lang,
    downloads: tempfile::TempDir,
    // Declared last: stopped after the session is closed.
    _driver: Driver,
}

impl Browser {
    /// A session on a new chromedriver; fails naming the Debian packages when either program
    /// is missing.
    fn start() -> Browser {
        let chromium = on_path("chromium").unwrap_or_else(|| {
            panic!(
                "chromium not found on PATH: the browser tests need Debian's packages \
                 `chromium` and `chromium-driver` (apt-get install chromium chromium-driver)"
            )
        });
        let driver = Driver::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let downloads = tempfile::tempdir().expect("download dir");
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--lang=zh-CN", "--window-size=1280,1000", "--no-first-run",
                    "--disable-extensions", "--disable-background-networking",
                ],
                "prefs": {
                    "intl.accept_languages": "zh-CN,zh",
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&driver.url),
            )
            .expect("a chromedriver session");
        Browser {
            rt,
            client: Some(client),
            base: String::new(),
            lang: Lang::Zh,
            downloads,
            _driver: driver,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("session")
    }

    /// The text of `key` in the language the pages are in.
    fn t<'k>(&self, key: &'k str) -> &'k str {
        assert!(i18n::has_key(self.lang, key), "no text {key}");
        i18n::t(self.lang, key)
    }

    /// Opens the home page, as a person typing the site's address.
    fn open_site(&self) {
        self.rt
            .block_on(self.c().goto(&format!("{}/", self.base)))
            .expect("open the site");
        self.page_is_clean("/");
    }

    fn path(&self) -> String {
        let u = self.rt.block_on(self.c().current_url()).expect("url");
        u.path().to_owned()
    }

    fn find(&self, xpath: &str) -> Element {
        let until = Instant::now() + PATIENCE;
        loop {
            match self.rt.block_on(self.c().find(Locator::XPath(xpath))) {
                Ok(e) => return e,
                Err(e) if Instant::now() >= until => {
                    self.screenshot("not-found");
                    panic!(
                        "nothing matches {xpath} on {}: {e}\n{}",
                        self.path(),
                        self.body_text()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn body_text(&self) -> String {
        self.rt
            .block_on(async {
                self.c()
                    .find(Locator::Css("body"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            })
            .unwrap_or_default()
    }

    fn screenshot(&self, name: &str) {
        if let Ok(png) = self.rt.block_on(self.c().screenshot()) {
            let _ = std::fs::write(format!("/tmp/dataop-browser-{name}.png"), png);
        }
    }

    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .expect("script")
    }

    /// Does `action` (a click that loads another page) and waits until the new page is loaded;
    /// then checks it.
    fn navigate(&self, what: &str, action: impl FnOnce()) {
        self.js("document.documentElement.setAttribute('data-before', '1')");
        action();
        let until = Instant::now() + PATIENCE;
        loop {
            let done = self.rt.block_on(self.c().execute(
                "return document.readyState === 'complete' \
                 && !document.documentElement.hasAttribute('data-before')",
                vec![],
            ));
            if matches!(done, Ok(Value::Bool(true))) {
                break;
            }
            if Instant::now() >= until {
                self.screenshot("no-navigation");
                panic!("{what} on {} loaded no page", self.path());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.page_is_clean(what);
    }

    /// No JavaScript error, no failed request and no missing stylesheet on the page.
    fn page_is_clean(&self, what: &str) {
        let log = self
            .rt
            .block_on(self.c().issue_cmd(BrowserLog))
            .expect("log");
        let severe: Vec<&Value> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .collect();
        if !severe.is_empty() {
            self.screenshot("errors");
            panic!(
                "after {what}, {} logged errors: {severe:#?}\n{}",
                self.path(),
                self.body_text()
            );
        }
        let broken = self.js(
            "return Array.from(document.querySelectorAll('link[rel=stylesheet]'))\
               .filter(l => !l.sheet).map(l => l.href)\
             .concat(performance.getEntriesByType('resource')\
               .filter(r => r.responseStatus >= 400).map(r => r.name + ' ' + r.responseStatus))",
        );
        assert_eq!(
            broken,
            json!([]),
            "after {what}, {} has assets that did not load",
            self.path()
        );
    }

    fn click(&self, e: &Element) {
        self.rt.block_on(e.click()).expect("click");
    }

    /// Follows the link whose visible text is `text`.
    fn link(&self, text: &str) {
        let e = self.find(&format!("//a[normalize-space()={}]", xpath_literal(text)));
        self.navigate(text, || self.click(&e));
    }

    /// Follows the first link whose visible text contains `text`.
    fn link_containing(&self, text: &str) {
        let e = self.find(&format!(
            "//main//a[contains(normalize-space(), {})]",
            xpath_literal(text)
        ));
        self.navigate(text, || self.click(&e));
    }

    /// Follows the link in the main navigation named by `key`.
    fn nav(&self, key: &str) {
        let e = self.find(&format!(
            "//nav[contains(@class, 'main-nav')]//a[normalize-space()={}]",
            xpath_literal(self.t(key))
        ));
        self.navigate(key, || self.click(&e));
    }

    /// Follows the link in the table row that mentions `row`.
    fn link_in_row(&self, row: &str) {
        let e = self.find(&format!(
            "//tr[td[contains(normalize-space(), {})]]//a",
            xpath_literal(row)
        ));
        self.navigate(row, || self.click(&e));
    }

    /// Presses the (first) button labelled `text`, which submits its form.
    fn press(&self, text: &str) {
        let e = self.find(&format!(
            "//button[normalize-space()={}]",
            xpath_literal(text)
        ));
        self.navigate(text, || self.click(&e));
    }

    /// Presses the button labelled `text` in the table row that mentions `row`.
    fn press_in_row(&self, row: &str, text: &str) {
        let e = self.find(&format!(
            "//tr[td[contains(normalize-space(), {})]]//button[normalize-space()={}]",
            xpath_literal(row),
            xpath_literal(text)
        ));
        self.navigate(text, || self.click(&e));
    }

    /// The control labelled `label` (by the label's `for`, or inside the label).
    fn control(&self, label: &str) -> Element {
        let l = self.find(&format!(
            "//label[normalize-space()={0}] | //*[@aria-label={0}]",
            xpath_literal(label)
        ));
        self.control_of(&l)
    }

    /// The control labelled `label` in the group of fields titled `legend`.
    fn control_in(&self, legend: &str, label: &str) -> Element {
        let l = self.find(&format!(
            "//fieldset[legend[normalize-space()={}]]//label[normalize-space()={}]",
            xpath_literal(legend),
            xpath_literal(label)
        ));
        self.control_of(&l)
    }

    fn control_of(&self, label: &Element) -> Element {
        self.rt
            .block_on(async {
                if label.tag_name().await? != "label" {
                    return Ok(label.clone());
                }
                match label.attr("for").await? {
                    Some(id) => {
                        self.c()
                            .find(Locator::XPath(&format!("//*[@id={}]", xpath_literal(&id))))
                            .await
                    }
                    None => label.find(Locator::XPath(".//input")).await,
                }
            })
            .unwrap_or_else(|e: fantoccini::error::CmdError| panic!("a label without control: {e}"))
    }

    /// Types `value` into the field labelled `label` (replacing what it held).
    fn fill(&self, label: &str, value: &str) {
        let e = self.control(label);
        self.type_into(&e, value);
    }

    fn type_into(&self, e: &Element, value: &str) {
        self.rt
            .block_on(async {
                e.clear().await?;
                e.send_keys(value).await
            })
            .expect("type");
    }

    /// Chooses the option shown as `option` in the list labelled `label`.
    fn choose(&self, label: &str, option: &str) {
        let e = self.control(label);
        self.rt
            .block_on(e.select_by_label(option))
            .unwrap_or_else(|err| panic!("no option {option} in {label}: {err}"));
    }

    /// Ticks the checkbox whose label contains `text`.
    fn tick(&self, text: &str) {
        self.tick_any(&[text]);
    }

    /// Ticks the checkbox whose label contains one of `texts`.
    fn tick_any(&self, texts: &[&str]) {
        let any: Vec<String> = texts
            .iter()
            .map(|t| format!("contains(normalize-space(), {})", xpath_literal(t)))
            .collect();
        let l = self.find(&format!("//label[{}]", any.join(" or ")));
        let e = self.control_of(&l);
        let on = self.rt.block_on(e.is_selected()).expect("checkbox");
        if !on {
            self.click(&e);
        }
    }

    /// Sets the file field labelled `label` to `file`, as choosing it in the file dialog.
    fn attach(&self, label: &str, file: &Path) {
        let e = self.control(label);
        self.rt
            .block_on(e.send_keys(&file.display().to_string()))
            .expect("choose a file");
    }

    /// Waits until the page shows `text`.
    fn wait_for(&self, text: &str) {
        self.wait_for_any(&[text]);
    }

    /// Waits until the page shows one of `texts`.
    fn wait_for_any(&self, texts: &[&str]) {
        let until = Instant::now() + PATIENCE;
        while !texts.iter().any(|t| self.body_text().contains(t)) {
            if Instant::now() >= until {
                self.screenshot("missing-text");
                panic!(
                    "{} does not show {texts:?}:\n{}",
                    self.path(),
                    self.body_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the page shows a status badge reading `label`.
    fn badge(&self, label: &str) {
        self.find(&format!(
            "//main//span[contains(concat(' ', @class, ' '), ' badge ') and normalize-space()={}]",
            xpath_literal(label)
        ));
    }

    /// Logs in through the header's login link.
    fn log_in(&self, user: &str, password: &str) {
        self.link(self.t("common.login"));
        self.fill(self.t("accounts.username"), user);
        self.fill(self.t("accounts.password"), password);
        self.press(self.t("common.login"));
        self.wait_for(self.t("common.logout"));
    }

    fn log_out(&self) {
        self.press(self.t("common.logout"));
        self.wait_for(self.t("common.login"));
    }

    /// Switches the pages to the other language by the top bar's link.
    fn switch_language(&mut self) {
        self.link(self.t("common.switch_language"));
        self.lang = match self.lang {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        };
        let html_lang = self.js("return document.documentElement.lang");
        assert_eq!(html_lang, json!(self.lang.html_lang()));
    }

    /// The file that the browser downloads next into its download directory.
    fn downloaded(&self, what: &str) -> (String, Vec<u8>) {
        let until = Instant::now() + PATIENCE;
        loop {
            let done: Vec<PathBuf> = std::fs::read_dir(self.downloads.path())
                .expect("download dir")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    !name.starts_with('.') && !name.ends_with(".crdownload")
                })
                .collect();
            if let Some(p) = done.first() {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                return (name, std::fs::read(p).expect("downloaded file"));
            }
            assert!(Instant::now() < until, "{what} was not downloaded");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
    }
}

/// The demo world's titles in the language of the pages.
struct Titles {
    call: String,
    dataset: String,
    /// The dataset's titles in both languages: the agreement pages show its Chinese title on
    /// English pages too.
    dataset_both: [String; 2],
}

fn titles(app: &TestApp, lang: Lang) -> Titles {
    use dataop::schema::{calls, datasets};
    let mut conn = app.conn();
    let (call_zh, call_en): (String, String) = calls::table
        .filter(calls::title_en.eq(dataop::admission::demo::DEMO_CALL_TITLE_EN))
        .select((calls::title_zh, calls::title_en))
        .first(&mut *conn)
        .expect("the demo call");
    let (ds_zh, ds_en): (String, String) = datasets::table
        .filter(datasets::title_en.eq(dataop::catalog::demo::DEMO_TITLE_EN))
        .select((datasets::title_zh, datasets::title_en))
        .first(&mut *conn)
        .expect("the demo dataset");
    Titles {
        call: i18n::pick(lang, &call_zh, &call_en).to_owned(),
        dataset: i18n::pick(lang, &ds_zh, &ds_en).to_owned(),
        dataset_both: [ds_en, ds_zh],
    }
}

/// A new enterprise of this pass.
struct Company {
    name: &'static str,
    prefix: &'static str,
    user: &'static str,
    person: &'static str,
}

const PASSWORD: &str = "browser-test-pass-1";

/// The enterprise registers, the platform verifies it, it applies to the demo call with an
/// attachment; the regulator assigns the expert, the expert files an opinion, the regulator
/// approves; the notice shows it and, after its period, the admission.
fn admission(b: &Browser, app: &TestApp, co: &Company, files: &Path) {
    let titles = titles(app, b.lang);
    let credit_code =
        dataop::accounts::credit_code::complete(co.prefix).expect("a valid credit code");
    let email = format!("{}@example.cn", co.user);

    // Registration, then the platform's verification.
    b.nav("common.nav_register");
    // In English, the enterprise's name and the person's name are both labelled "Name": told
    // apart by their group, as a person would.
    let org = b.t("accounts.register_org");
    let person = b.t("accounts.register_user");
    for (group, label, value) in [
        (org, "accounts.org_name", co.name),
        (org, "accounts.credit_code", credit_code.as_str()),
        (org, "accounts.legal_representative", co.person),
        (org, "accounts.contact_name", co.person),
        (org, "accounts.contact_phone", "0571-88886666"),
        (org, "accounts.email", email.as_str()),
        (org, "accounts.address", "浙江省杭州市西湖区"),
        (org, "accounts.business_scope", "健康数据分析服务"),
        (person, "accounts.username", co.user),
        (person, "accounts.display_name", co.person),
        (person, "accounts.password", PASSWORD),
        (person, "accounts.password_confirm", PASSWORD),
    ] {
        let e = b.control_in(group, b.t(label));
        b.type_into(&e, value);
    }
    b.press(b.t("accounts.register_submit"));
    b.wait_for(b.t("accounts.flash_registered"));
    b.log_in("platform", DEMO_PASSWORD);
    b.nav("common.nav_orgs");
    b.press_in_row(co.name, b.t("accounts.action_verify"));
    b.find(&format!(
        "//tr[td[normalize-space()={}]]//span[normalize-space()={}]",
        xpath_literal(co.name),
        xpath_literal(b.t("accounts.org_status_verified"))
    ));
    b.log_out();

    // The enterprise applies to the demo call.
    b.log_in(co.user, PASSWORD);
    b.nav("admission.nav_calls");
    b.link(&titles.call);
    b.press(b.t("admission.action_apply"));
    assert!(b.path().starts_with("/applications/"), "{}", b.path());
    let application = b.path().trim_start_matches("/applications/").to_owned();
    let pdf = files.join(format!("{}-security-report.pdf", co.user));
    std::fs::write(&pdf, PDF).unwrap();
    b.attach(b.t("admission.file"), &pdf);
    b.press(b.t("admission.action_upload"));
    b.wait_for(&format!("{}-security-report.pdf", co.user));
    let scenario = b.find(
        "//select[@id=//label[normalize-space()=$x]/@for]/option[2]"
            .replace("$x", &xpath_literal(b.t("admission.field_scenario")))
            .as_str(),
    );
    let scenario = b.rt.block_on(scenario.text()).unwrap();
    b.choose(b.t("admission.field_scenario"), &scenario);
    b.tick(&titles.dataset);
    b.fill(
        b.t("admission.purpose"),
        "按区县统计老年门诊负担 / elderly visits by district",
    );
    let evidence = b.rt.block_on(b.c().find_all(Locator::XPath(&format!(
        "//fieldset[legend[normalize-space()={}]]//label",
        xpath_literal(b.t("admission.evidence"))
    ))));
    let evidence = evidence.expect("the evidence fields");
    assert_eq!(evidence.len(), 4, "four groups of admission requirements");
    for l in &evidence {
        let e = b.control_of(l);
        b.type_into(&e, "依法设立，等保三级测评通过，设有数据安全负责人。");
    }
    b.tick(b.t("admission.declaration"));
    b.press(b.t("admission.action_submit"));
    b.badge(b.t("admission.app_state.submitted"));
    b.log_out();

    // The regulator assigns the expert.
    b.log_in("regulator", DEMO_PASSWORD);
    b.nav("admission.nav_review");
    b.link_in_row(co.name);
    assert_eq!(b.path(), format!("/applications/{application}"));
    b.choose(b.t("admission.assign_expert"), "陈专家");
    b.press(b.t("admission.action_assign"));
    b.find(&format!(
        "//tr[td[normalize-space()='陈专家'] and td[normalize-space()={}]]",
        xpath_literal(b.t("admission.assignment_state.assigned"))
    ));
    b.log_out();

    // The expert reads it and files an opinion.
    b.log_in("expert", DEMO_PASSWORD);
    b.nav("admission.nav_assignments");
    b.link_in_row(co.name);
    b.wait_for(&format!("{}-security-report.pdf", co.user));
    let opinion = format!("{}：安全措施充分，同意准入。", co.name);
    b.choose(
        b.t("admission.recommendation_label"),
        b.t("admission.recommendation.approve"),
    );
    b.fill(b.t("admission.opinion"), &opinion);
    b.press(b.t("admission.action_file_opinion"));
    b.wait_for(&opinion);
    b.log_out();

    // The regulator sees the opinion and approves.
    b.log_in("regulator", DEMO_PASSWORD);
    b.nav("admission.nav_review");
    b.link_in_row(co.name);
    b.wait_for(&opinion);
    b.fill(b.t("admission.approval_note"), "材料齐全 / complete");
    b.press(b.t("admission.action_approve"));
    b.badge(b.t("admission.app_state.notice"));
    b.log_out();

    // Anyone sees the notice; once its period has passed, the admission.
    b.nav("admission.nav_notices");
    b.link(co.name);
    b.wait_for(&titles.dataset);
    app.state().clock.advance(chrono::Duration::days(10));
    dataop::scheduler::tick(app.state());
    b.nav("admission.nav_notices");
    let admitted = b.find(&format!(
        "//section[h2[normalize-space()={}]]",
        xpath_literal(b.t("admission.notices_admitted"))
    ));
    let admitted = b.rt.block_on(admitted.text()).unwrap();
    assert!(admitted.contains(co.name), "admitted: {admitted}");
}

/// The regulator drafts the agreement from the admitted application and sends it; the
/// operator signs; the regulator seals; anyone verifies it on the public page.
fn agreement(b: &Browser, app: &TestApp, co: &Company) {
    let titles = titles(app, b.lang);
    b.log_in("regulator", DEMO_PASSWORD);
    b.nav("agreements.nav_admin");
    b.link_containing(co.name);
    b.tick_any(&[&titles.dataset_both[0], &titles.dataset_both[1]]);
    b.fill(b.t("agreements.epsilon"), "1.5");
    b.fill(
        b.t("agreements.purpose"),
        "分析各区老年门诊负担 / elderly visits by district",
    );
    b.fill(
        b.t("agreements.scenario"),
        "医疗服务质量评价 / quality of care",
    );
    b.fill(
        b.t("agreements.security"),
        "仅在平台沙箱内计算 / sandbox only",
    );
    b.fill(
        b.t("agreements.disposal"),
        "终止后 10 个工作日内删除 / deleted within 10 days",
    );
    b.fill(b.t("agreements.trial"), "3");
    b.fill(b.t("agreements.price_per_job"), "0.10");
    b.fill(b.t("agreements.price_per_thousand_rows"), "0.20");
    b.fill(b.t("agreements.split_platform"), "30");
    b.fill(b.t("agreements.split_provider"), "30");
    b.fill(b.t("agreements.split_operator"), "40");
    b.fill(b.t("agreements.run_budget"), "100");
    b.press(b.t("agreements.save_draft"));
    assert!(b.path().starts_with("/agreements/"), "{}", b.path());
    let h1 =
        b.rt.block_on(async { b.c().find(Locator::Css("h1")).await?.text().await });
    let h1 = h1.expect("the agreement's heading");
    let number: String = h1[h1.find("DATAOP-").expect("the agreement number")..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    b.press(b.t("agreements.submit"));
    b.badge(b.t("agreements.state.awaiting_operator"));
    b.log_out();

    b.log_in(co.user, PASSWORD);
    b.nav("agreements.nav_mine");
    b.link(&number);
    b.wait_for_any(&[&titles.dataset_both[0], &titles.dataset_both[1]]);
    b.fill(b.t("agreements.sign_name"), co.name);
    b.press(b.t("agreements.sign"));
    b.badge(b.t("agreements.state.awaiting_seal"));
    b.log_out();

    b.log_in("regulator", DEMO_PASSWORD);
    b.nav("agreements.nav_admin");
    b.link(&number);
    b.press(b.t("agreements.seal"));
    b.badge(b.t("agreements.state.in_force"));
    let hash = b.find("//dt[normalize-space()='SHA-256']/following-sibling::dd[1]");
    let hash = b.rt.block_on(hash.text()).unwrap();
    assert_eq!(hash.len(), 64, "{hash}");
    b.log_out();

    b.nav("agreements.nav_verify");
    b.fill(b.t("agreements.number"), &number);
    b.fill("SHA-256", &hash);
    b.press(b.t("agreements.verify_button"));
    let verdict = b.find("//*[contains(@class, 'verdict')]");
    let verdict = b.rt.block_on(verdict.text()).unwrap();
    assert!(
        verdict.starts_with(b.t("agreements.verify.valid_label")),
        "{verdict}"
    );
}

fn set_rows(app: &TestApp, job: i64, done: i64, total: i64) {
    use dataop::schema::jobs;
    diesel::update(jobs::table.find(job))
        .set((jobs::rows_done.eq(done), jobs::rows_total.eq(total)))
        .execute(&mut *app.conn())
        .unwrap();
}

/// `alpha` submits example (a) through the form (its manifest with a comment line of this
/// test, so the first submission is a computation of its own that the reviewer approves and the
/// second runs without new approval), watches it run, the reviewer releases it and `alpha`
/// downloads the CSV.
fn job(b: &Browser, app: &TestApp, needs_approval: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    b.log_in("alpha", DEMO_PASSWORD);
    b.nav("jobs.nav_mine");
    b.link(b.t("jobs.new_title"));
    b.attach(b.t("jobs.module_file"), &root.join(MODULE));
    let manifest = std::fs::read_to_string(root.join(MANIFEST)).unwrap();
    b.fill(
        b.t("jobs.manifest"),
        &format!("# 浏览器测试 / browser test\n{manifest}"),
    );
    b.fill(
        b.t("jobs.purpose"),
        "各区老年门诊负担 / elderly visits by district",
    );
    b.press(b.t("jobs.submit"));
    assert!(b.path().starts_with("/jobs/"), "{}", b.path());
    let job: i64 = b
        .path()
        .trim_start_matches("/jobs/")
        .parse()
        .expect("the job's id");
    if needs_approval {
        // The reviewer approves the new computation from the review queue.
        b.badge(b.t("jobs.state.awaiting_approval"));
        let computation = b.find(&format!(
            "//dt[normalize-space()={}]/following-sibling::dd[1]",
            xpath_literal(b.t("jobs.computation"))
        ));
        let computation = b.rt.block_on(computation.text()).unwrap();
        let computation: String = computation
            .trim_start_matches('#')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        b.log_out();
        b.log_in("regulator", DEMO_PASSWORD);
        b.nav("jobs.nav_admin");
        let pending = b.find(&format!(
            "//a[starts-with(normalize-space(), '#{computation} ')]"
        ));
        b.navigate("the pending computation", || b.click(&pending));
        b.press(b.t("jobs.approve"));
        b.badge(b.t("jobs.cstate.approved"));
        b.log_out();
        b.log_in("alpha", DEMO_PASSWORD);
        b.nav("jobs.nav_mine");
        b.link(&format!("#{job}"));
    }
    b.badge(b.t("jobs.state.queued"));

    // A worker takes it: the page's script sees the new state and shows the running page.
    let claimed = worker::claim(
        &mut app.conn(),
        "browser-test",
        app.state().clock.now(),
        chrono::Duration::zero(),
    )
    .unwrap();
    assert_eq!(claimed, Some(job));
    b.badge(b.t("jobs.state.running"));
    b.page_is_clean("the reload on the run's start");

    // The progress the worker writes is for platform staff: the operator's bar only says that
    // the run runs (how far it has read, and when, is steered by the module: ABI v2, 8), and
    // stays as it is, on the same page, whatever the worker writes.
    b.js("window.dataopSamePage = true");
    let shown = || {
        b.js("var box = document.querySelector('[data-events]');\
             return [box.querySelector('progress').hasAttribute('value'), \
                     box.querySelector('.rows-done') === null, \
                     window.dataopSamePage === true]")
    };
    assert_eq!(shown(), json!([false, true, true]));
    for done in [30_000, 90_000] {
        set_rows(app, job, done, 120_000);
        // Several of the event stream's polls.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            shown(),
            json!([false, true, true]),
            "the operator's page shows no progress figure after {done} rows"
        );
    }
    b.page_is_clean("the progress");

    // The worker (taking over the lease) runs it to the end: the page shows it finished.
    assert!(worker::run_once(app.state(), "browser-test").unwrap());
    b.badge(b.t("jobs.state.finished"));
    b.page_is_clean("the reload on the run's end");
    b.log_out();

    // The reviewer releases the output.
    b.log_in("regulator", DEMO_PASSWORD);
    b.nav("jobs.nav_admin");
    b.link(&format!("#{job}"));
    b.press(b.t("jobs.release"));
    b.badge(b.t("jobs.state.released"));
    b.log_out();

    // alpha downloads the CSV.
    b.log_in("alpha", DEMO_PASSWORD);
    b.nav("jobs.nav_mine");
    b.link(&format!("#{job}"));
    b.wait_for(b.t("jobs.downloads"));
    for stale in std::fs::read_dir(b.downloads.path()).unwrap() {
        std::fs::remove_file(stale.unwrap().path()).unwrap();
    }
    let csv = b.find("//a[normalize-space()='CSV']");
    b.click(&csv);
    let (name, bytes) = b.downloaded("the CSV");
    assert!(name.ends_with(".csv"), "{name}");
    let text = String::from_utf8(bytes).expect("UTF-8");
    // One table that Excel and pandas open as it is: a BOM, a header, the code beside its name.
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("\u{feff}aggregate,district,suppressed,count")
            && text.contains("\nvisits_by_district,330102 上城区,"),
        "{text}"
    );
    b.page_is_clean("the download");
    b.log_out();
}

#[test]
fn every_role_s_main_story_in_chinese_then_english() {
    let mut b = Browser::start();
    let app = TestApp::builder().demo_data().start();
    b.base = app.base.clone();
    let files = tempfile::tempdir().unwrap();
    b.open_site();
    assert_eq!(b.js("return document.documentElement.lang"), json!("zh-CN"));
    let companies = [
        Company {
            name: "甲乙健康数据科技有限公司",
            prefix: "9133010670000111",
            user: "jiayi",
            person: "孙甲乙",
        },
        Company {
            name: "Gamma Health Analytics Co., Ltd.",
            prefix: "9133010670000222",
            user: "gamma",
            person: "Gamma Li",
        },
    ];
    for (i, co) in companies.iter().enumerate() {
        if i == 1 {
            b.switch_language();
        }
        admission(&b, &app, co, files.path());
        agreement(&b, &app, co);
        job(&b, &app, i == 0);
    }
}
