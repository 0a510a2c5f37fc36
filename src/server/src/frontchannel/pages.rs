//! The HTML a person sees: sign-in, TOTP, consent, connected apps and error pages, in Japanese and
//! English, server-rendered with inline CSS from the templates in `src/server/templates` (compiled
//! into the binary). The only script is `/assets/passkey.js`, on pages with a passkey button
//! ([`Page::passkey_script`]); no inline script or event handler.
//!
//! # Escaping: minijinja, every `{{ }}` HTML-escaped
//! The templates are rendered by minijinja with HTML auto-escaping on for every template (whatever
//! its file name): everything printed is escaped (`&` `<` `>` `"` `'` and `/`), nothing in the
//! templates is marked safe (`|safe` or `autoescape false` are refused by a test), and no Rust code
//! here builds HTML or escapes by hand. Values are printed only in text and in quoted attribute
//! values that are not URLs, scripts or styles: every URL (form actions, the language switch, the
//! script) is a literal in the templates, and a test checks that no `{{ }}` sits in an `href`,
//! `src`, `action`, `style` or `<script>`. Undefined variables are errors (strict mode), not empty
//! strings.
//!
//! Why minijinja and not askama or maud: askama checks templates and their variables at compile
//! time, which minijinja cannot (its templates are parsed at first use: a syntax error or a
//! misspelt variable shows up as a failed render, logged and answered 500, so the unit tests render
//! every template in every variant and both languages to catch them before a build ships). But
//! askama's HTML escaper writes numeric character references (`&#60;` for `<`), while these pages
//! have always carried the named ones (lt, amp, quot) that the integration tests and the test
//! harness's page scrapers read; minijinja writes those, and keeps the templates plain HTML files
//! with Jinja syntax. maud writes HTML as Rust macros (no template files) and leaves `'` unescaped.
//!
//! # Page contract (stable, for the browser test)
//! Every control has a `data-testid` (and, for the older ones, the same `id`):
//! - sign-in (`GET /login`, `GET /apps` signed out): `username`, `password`, `sign-in` (submit);
//!   `passkey-sign-in` (button: "パスキーでサインイン" / "Sign in with a passkey").
//! - step-up (`GET /login`): `totp-code` (input `name=code`, `id=code`), `totp-submit` (`id=verify`);
//!   `passkey-sign-in` when the user has a passkey.
//! - consent: `approve`, `deny`, `passkey-register` ("パスキーを登録" / "Register a passkey").
//! - connected apps (`/apps`): one `data-testid="app"` block per app, with `data-client-id`; its
//!   button `revoke`; `passkey-register`; `sign-out`.
//! - messages: `error` (role=alert), `notice` (role=status), `passkey-error` (the passkey
//!   script's own failures, e.g. a cancelled ceremony; hidden until then).

use crate::authorization_details::TransferSummary;
use crate::store::{Account, Grant};
use minijinja::value::Value;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior};
use std::sync::OnceLock;

/// The page language: `ui_locales`, else `Accept-Language`, else the switch link's cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag
            .trim()
            .split(['-', '_', ';'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first supported language of a space-separated `ui_locales` (OIDC Core §3.1.2.1).
    pub fn from_ui_locales(v: &str) -> Option<Lang> {
        v.split_whitespace().find_map(Lang::parse)
    }

    /// The supported language with the highest q-value in an `Accept-Language` header (RFC 9110 §12.5.4).
    pub fn from_accept_language(v: &str) -> Option<Lang> {
        let mut best: Option<(Lang, f32)> = None;
        for part in v.split(',').take(32) {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("");
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
                    best = Some((lang, q));
                }
            }
        }
        best.map(|(l, _)| l)
    }

    fn pick(self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

/// A scope in plain words.
pub fn scope_words(scope: &str, lang: Lang) -> String {
    match scope {
        "openid" => lang
            .pick(
                "あなたが誰であるかの確認（サインインしたことをアプリに伝えます）",
                "confirm who you are (tell the app that you signed in)",
            )
            .into(),
        "accounts" => lang
            .pick(
                "口座情報・残高・入出金明細の参照",
                "view your accounts, balances and transactions",
            )
            .into(),
        "payments" => lang.pick("振込の実行", "make transfers").into(),
        "offline_access" => lang
            .pick(
                "アプリを使っていない間も、このアクセスを継続する",
                "keep this access while you are not using the app",
            )
            .into(),
        other => other.to_string(),
    }
}

/// The page templates (`src/server/templates`), compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    ("page.css", include_str!("../../templates/page.css")),
    ("parts.html", include_str!("../../templates/parts.html")),
    ("sign_in.html", include_str!("../../templates/sign_in.html")),
    ("totp.html", include_str!("../../templates/totp.html")),
    ("consent.html", include_str!("../../templates/consent.html")),
    ("apps.html", include_str!("../../templates/apps.html")),
    ("error.html", include_str!("../../templates/error.html")),
];

/// The template environment, built once: every template HTML-escaped whatever its name, and an
/// undefined variable an error (not an empty string), so a misspelt name fails the render tests.
fn environment() -> &'static std::result::Result<Environment<'static>, minijinja::Error> {
    static ENV: OnceLock<std::result::Result<Environment<'static>, minijinja::Error>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(env)
    })
}

/// A rendered page, and whether it loads `/assets/passkey.js` (then it is served with
/// [`super::CSP_PASSKEY`], otherwise with [`super::CSP`], which allows no script at all).
#[derive(Debug)]
pub struct Page {
    /// `None` when rendering failed (logged): the page is answered as a 500.
    html: Option<String>,
    passkey_script: bool,
}

impl Page {
    /// The HTML, unless rendering failed.
    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }

    pub fn into_html(self) -> Option<String> {
        self.html
    }

    /// Whether the page loads `/assets/passkey.js`.
    pub fn passkey_script(&self) -> bool {
        self.passkey_script
    }
}

/// Where a page's language switch link goes.
#[derive(Clone, Copy)]
enum Switch {
    Login,
    Apps,
    None,
}

/// Renders template `name` with `ctx` plus what the layout needs (`ja`, `lang`, `switch`).
fn render(name: &str, lang: Lang, switch: Switch, passkey_script: bool, ctx: Value) -> Page {
    let switch = match switch {
        Switch::Login => Some("login"),
        Switch::Apps => Some("apps"),
        Switch::None => None,
    };
    let ctx = context! { ja => lang == Lang::Ja, lang => lang.code(), switch => switch, ..ctx };
    let rendered = match environment() {
        Ok(env) => env.get_template(name).and_then(|t| t.render(ctx)),
        Err(e) => {
            tracing::error!(error = %e, "page templates do not compile");
            return Page {
                html: None,
                passkey_script: false,
            };
        }
    };
    match rendered {
        Ok(html) => Page {
            html: Some(html),
            passkey_script,
        },
        Err(e) => {
            tracing::error!(template = name, error = %e, "page rendering failed");
            Page {
                html: None,
                passkey_script: false,
            }
        }
    }
}

/// The sign-in form (username + password), and "Sign in with a passkey" when `passkey` (the issuer
/// can be a WebAuthn RP). `client_name` is the app asking, if any; `username` is echoed back.
pub fn sign_in(
    lang: Lang,
    csrf: &str,
    client_name: Option<&str>,
    error: Option<&str>,
    username: &str,
    passkey: bool,
) -> Page {
    sign_in_page(lang, csrf, client_name, error, None, username, passkey)
}

/// The connected-apps page signed out: the sign-in form, with the outcome of the last action
/// (revoked, signed out, ...) as a notice.
pub fn apps_sign_in(lang: Lang, csrf: &str, notice: Option<&str>, passkey: bool) -> Page {
    sign_in_page(lang, csrf, None, None, notice, "", passkey)
}

fn sign_in_page(
    lang: Lang,
    csrf: &str,
    client_name: Option<&str>,
    error: Option<&str>,
    notice: Option<&str>,
    username: &str,
    passkey: bool,
) -> Page {
    render(
        "sign_in.html",
        lang,
        Switch::Login,
        passkey,
        context! { csrf, client_name, error, notice, username, passkey },
    )
}

/// The step-up page: the TOTP code (RFC 6238, from an authenticator app) when `totp`, and/or a
/// passkey when `passkey` (the user has one).
pub fn totp(lang: Lang, csrf: &str, error: Option<&str>, totp: bool, passkey: bool) -> Page {
    render(
        "totp.html",
        lang,
        Switch::Login,
        passkey,
        context! { csrf, error, totp, passkey },
    )
}

/// What the consent page shows.
pub struct ConsentPage<'a> {
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub scopes: &'a [&'a str],
    pub accounts: &'a [Account],
    /// The transfers asked for (RFC 9396 `payment_initiation`): shown, and the user must choose the
    /// account each is paid from among `accounts`.
    pub transfers: &'a [TransferSummary],
    /// The debtor account chosen before (the page shown again after a refusal).
    pub chosen: Option<&'a str>,
    pub user_name: &'a str,
    /// Offer "Register a passkey" (the issuer can be a WebAuthn RP).
    pub passkey_register: bool,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The consent page: who asks, for what (in plain words), on which accounts; each transfer asked for
/// in plain words, with the required choice of the account it is paid from.
pub fn consent(lang: Lang, page: &ConsentPage<'_>) -> Page {
    let scopes: Vec<String> = page.scopes.iter().map(|s| scope_words(s, lang)).collect();
    let accounts: Vec<Value> = page
        .accounts
        .iter()
        .map(|a| context! { name => a.name.as_str(), id => a.account_id.as_str() })
        .collect();
    render(
        "consent.html",
        lang,
        Switch::Login,
        page.passkey_register,
        context! {
            csrf => page.csrf,
            client_name => page.client_name,
            scopes,
            accounts,
            transfers => transfer_values(page.transfers),
            chosen => page.chosen,
            user_name => page.user_name,
            passkey_register => page.passkey_register,
            notice => page.notice,
            error => page.error,
        },
    )
}

/// Transfers for `parts.transfer_list`.
fn transfer_values(transfers: &[TransferSummary]) -> Vec<Value> {
    transfers
        .iter()
        .map(|t| {
            context! {
                amount => t.amount.as_str(),
                currency => t.currency.as_str(),
                creditor_name => t.creditor_name.as_str(),
                creditor_account => t.creditor_account.as_str(),
                remittance => t.remittance.as_str(),
                debtor_account => t.debtor_account.as_deref(),
            }
        })
        .collect()
}

/// One connected app for the apps page.
pub struct ConnectedApp<'a> {
    pub grant: &'a Grant,
    pub client_name: String,
    /// The transfers the grant allows (RFC 9396 details granted at consent).
    pub transfers: Vec<TransferSummary>,
}

/// The apps page's messages and options.
#[derive(Default)]
pub struct AppsExtras<'a> {
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
    /// Offer "Register a passkey".
    pub passkey_register: bool,
    /// The user's passkeys (base64url credential IDs), each with a Remove button.
    pub passkeys: &'a [String],
}

/// FISC item 38: every client holding a live grant, with scopes (and the transfers it allows), when
/// granted and last used, and a Revoke button each; the user's passkeys, each with a Remove button.
pub fn apps(
    lang: Lang,
    csrf: &str,
    user_name: &str,
    apps: &[ConnectedApp<'_>],
    extras: &AppsExtras<'_>,
) -> Page {
    let apps: Vec<Value> = apps
        .iter()
        .map(|a| {
            let scopes: Vec<String> = a
                .grant
                .scope
                .split_whitespace()
                .map(|s| scope_words(s, lang))
                .collect();
            context! {
                client_id => a.grant.client_id.as_str(),
                name => a.client_name.as_str(),
                scopes,
                transfers => transfer_values(&a.transfers),
                granted => format_time(a.grant.created_at),
                used => format_time(a.grant.last_used_at),
                grant_id => a.grant.grant_id.as_str(),
            }
        })
        .collect();
    // The first characters name a passkey well enough; the form carries the whole ID.
    let passkeys: Vec<Value> = extras
        .passkeys
        .iter()
        .map(|id| context! { id => id.as_str(), short => id.chars().take(12).collect::<String>() })
        .collect();
    render(
        "apps.html",
        lang,
        Switch::Apps,
        extras.passkey_register,
        context! {
            csrf,
            user_name,
            apps,
            passkeys,
            notice => extras.notice,
            error => extras.error,
            passkey_register => extras.passkey_register,
        },
    )
}

/// An error page for problems that cannot go back to the app (no verified redirect URI).
pub fn error(lang: Lang, message: &str) -> Page {
    render("error.html", lang, Switch::None, false, context! { message })
}

/// Messages shown on the pages, in both languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    BadCredentials,
    BadCode,
    CodeUsed,
    Locked {
        minutes: i64,
    },
    AddressLocked {
        minutes: i64,
    },
    /// Attempts on this account are being slowed (frontchannel/limits.rs): wait this long.
    Delayed {
        seconds: i64,
    },
    /// Too many consecutive failures on this account (NIST SP 800-63B §5.2.2 cap).
    Suspended,
    NoTotp,
    RequestMissing,
    RequestExpired,
    ClientMismatch,
    UnknownClient,
    SessionExpired,
    Csrf,
    BadRequest,
    Revoked,
    SignedOut,
    PasskeyFailed,
    PasskeyRegistered,
    PasskeyRemoved,
    PasskeyRegisterFailed,
    /// A transfer is approved only with the account it is paid from (RFC 9396 §7).
    DebtorAccountMissing,
    /// The account chosen to pay from is not one of the user's.
    DebtorAccountNotYours,
    /// An internal failure (details only in the log).
    Internal,
}

impl Msg {
    pub fn text(self, lang: Lang) -> String {
        use Msg::*;
        match (self, lang) {
            (BadCredentials, Lang::Ja) => "ユーザー名またはパスワードが正しくありません。".into(),
            (BadCredentials, Lang::En) => "The username or password is not correct.".into(),
            (BadCode, Lang::Ja) => "確認コードが正しくありません。".into(),
            (BadCode, Lang::En) => "The verification code is not correct.".into(),
            (CodeUsed, Lang::Ja) => "この確認コードは使用済みです。次のコードが表示されるまでお待ちください。".into(),
            (CodeUsed, Lang::En) => "This code has already been used. Wait for the next code.".into(),
            (Locked { minutes }, Lang::Ja) => format!(
                "サインインの失敗が続いたため、このアカウントは一時的にロックされています。約{minutes}分後にもう一度お試しください。"
            ),
            (Locked { minutes }, Lang::En) => format!(
                "This account is temporarily locked after too many failed sign-in attempts. Try again in about {minutes} minute(s)."
            ),
            (AddressLocked { minutes }, Lang::Ja) => format!(
                "この接続元からのサインインの失敗が多すぎるため、一時的に受け付けを停止しています。約{minutes}分後にもう一度お試しください。"
            ),
            (AddressLocked { minutes }, Lang::En) => format!(
                "Too many failed sign-in attempts came from your network. Try again in about {minutes} minute(s)."
            ),
            (Delayed { seconds }, Lang::Ja) => format!(
                "このアカウントへのサインインの失敗が続いているため、次の試行まで約{seconds}秒お待ちください。"
            ),
            (Delayed { seconds }, Lang::En) => format!(
                "Several sign-in attempts on this account have failed. Wait about {seconds} second(s) and try again."
            ),
            (Suspended, Lang::Ja) => "サインインの失敗が上限に達したため、このアカウントのパスワードによるサインインを停止しています。パスキーでサインインするか、銀行までご連絡ください。".into(),
            (Suspended, Lang::En) => "Password sign-in to this account is stopped after too many failed attempts. Sign in with a passkey or contact the bank.".into(),
            (NoTotp, Lang::Ja) => "このアプリが求める認証方式（確認コード）があなたのアカウントには設定されていません。".into(),
            (NoTotp, Lang::En) => "The app asks for a verification code, which is not set up for your account.".into(),
            (RequestMissing, Lang::Ja) => "認可リクエストが不正です（事前登録（PAR）された request_uri と client_id が必要です）。".into(),
            (RequestMissing, Lang::En) => "Invalid authorization request: a pushed request_uri (PAR) and the client_id are required.".into(),
            (RequestExpired, Lang::Ja) => "この認可リクエストは期限切れか、すでに使用されています。".into(),
            (RequestExpired, Lang::En) => "This authorization request has expired or has already been used.".into(),
            (ClientMismatch, Lang::Ja) => "認可リクエストのアプリが一致しません。".into(),
            (ClientMismatch, Lang::En) => "The authorization request belongs to another app.".into(),
            (UnknownClient, Lang::Ja) => "このアプリは登録されていません。".into(),
            (UnknownClient, Lang::En) => "This app is not registered.".into(),
            (SessionExpired, Lang::Ja) => "セッションの有効期限が切れました（またはCookieが無効です）。".into(),
            (SessionExpired, Lang::En) => "Your session has expired (or cookies are disabled).".into(),
            (Csrf, Lang::Ja) => "フォームの有効期限が切れたか、不正な送信です。".into(),
            (Csrf, Lang::En) => "The form has expired or was not sent from this site.".into(),
            (BadRequest, Lang::Ja) => "リクエストが不正です。".into(),
            (BadRequest, Lang::En) => "The request is not valid.".into(),
            (Revoked, Lang::Ja) => "アプリの連携を取り消しました。".into(),
            (Revoked, Lang::En) => "The app's access has been revoked.".into(),
            (SignedOut, Lang::Ja) => "サインアウトしました。".into(),
            (SignedOut, Lang::En) => "You have signed out.".into(),
            (PasskeyFailed, Lang::Ja) => "パスキーを確認できませんでした。".into(),
            (PasskeyFailed, Lang::En) => "The passkey could not be verified.".into(),
            (PasskeyRegistered, Lang::Ja) => "パスキーを登録しました。次回からパスキーでサインインできます。".into(),
            (PasskeyRegistered, Lang::En) => "Your passkey is registered: next time, sign in with it.".into(),
            (PasskeyRemoved, Lang::Ja) => "パスキーを削除しました。".into(),
            (PasskeyRemoved, Lang::En) => "The passkey is removed.".into(),
            (PasskeyRegisterFailed, Lang::Ja) => "パスキーを登録できませんでした。".into(),
            (PasskeyRegisterFailed, Lang::En) => "The passkey could not be registered.".into(),
            (DebtorAccountMissing, Lang::Ja) => "振込を許可するには、出金口座を選んでください。".into(),
            (DebtorAccountMissing, Lang::En) => "Choose the account to pay from to approve the transfer.".into(),
            (DebtorAccountNotYours, Lang::Ja) => "選ばれた出金口座はあなたの口座ではありません。あなたの口座から選んでください。".into(),
            (DebtorAccountNotYours, Lang::En) => "The account chosen to pay from is not one of your accounts. Choose one of yours.".into(),
            (Internal, Lang::Ja) => "システムで問題が発生しました。しばらくしてからもう一度お試しください。".into(),
            (Internal, Lang::En) => "Something went wrong on our side. Try again later.".into(),
        }
    }
}

/// `2026-05-01 21:34 JST` (the bank's time zone, UTC+9, for both languages).
pub fn format_time(unix: i64) -> String {
    let t = unix + 9 * 3600;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} JST",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn language_choice() {
        assert_eq!(Lang::from_ui_locales("fr-CA en ja"), Some(Lang::En));
        assert_eq!(Lang::from_ui_locales("fr"), None);
        assert_eq!(
            Lang::from_accept_language("en-US;q=0.5,en;q=0.9,ja;q=0.95"),
            Some(Lang::Ja)
        );
        assert_eq!(Lang::from_accept_language("ja;q=0, en;q=0.1"), Some(Lang::En));
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,ja;q=0.95"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language("de"), None);
    }

    /// Hostile text: a script element, both quotes, an ampersand.
    const HOSTILE: &str = "<script>alert(\"x&'y\")</script>";
    /// [`HOSTILE`] as minijinja's HTML escaping writes it.
    const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(&quot;x&amp;&#x27;y&quot;)&lt;&#x2f;script&gt;";
    const SCRIPT_TAG: &str = "<script src=\"/assets/passkey.js\" defer></script>";

    fn html_of(page: &Page) -> &str {
        page.html().unwrap_or_else(|| panic!("render failed: {page:?}"))
    }

    fn grant(text: &str) -> Grant {
        Grant {
            grant_id: text.into(),
            client_id: text.into(),
            user_id: "u".into(),
            scope: format!("openid {text}"),
            created_at: 1_700_000_000,
            last_used_at: 1_700_000_100,
            revoked: false,
        }
    }

    fn account(text: &str) -> Account {
        Account {
            account_id: text.into(),
            user_id: "u".into(),
            name: text.into(),
            currency: "JPY".into(),
            balance: 1,
        }
    }

    fn transfer(text: &str) -> TransferSummary {
        TransferSummary {
            amount: text.into(),
            currency: text.into(),
            creditor_name: text.into(),
            creditor_account: text.into(),
            remittance: text.into(),
            debtor_account: Some(text.into()),
        }
    }

    /// Every page in every variant, each field holding `text`.
    fn every_page(lang: Lang, text: &str) -> Vec<(&'static str, Page)> {
        let mut pages = Vec::new();
        for flag in [false, true] {
            let some = flag.then_some(text);
            pages.push(("sign-in", sign_in(lang, text, some, some, text, flag)));
            pages.push(("apps sign-in", apps_sign_in(lang, text, some, flag)));
            // The step-up page offers the code, a passkey or both (never neither: no handler asks).
            for (totp_on, passkey) in [(true, flag), (flag, true)] {
                pages.push(("totp", totp(lang, text, some, totp_on, passkey)));
            }
            let accounts = if flag { vec![account(text)] } else { Vec::new() };
            // Without transfers, and with a transfer whose every field holds `text`.
            for transfers in [Vec::new(), vec![transfer(text)]] {
                pages.push((
                    "consent",
                    consent(
                        lang,
                        &ConsentPage {
                            csrf: text,
                            client_name: text,
                            scopes: &["openid", "accounts", text],
                            accounts: &accounts,
                            transfers: &transfers,
                            chosen: some,
                            user_name: text,
                            passkey_register: flag,
                            notice: some,
                            error: some,
                        },
                    ),
                ));
            }
            let g = grant(text);
            let connected = [ConnectedApp {
                grant: &g,
                client_name: text.into(),
                transfers: if flag { vec![transfer(text)] } else { Vec::new() },
            }];
            let passkeys = [text.to_string()];
            pages.push((
                "apps",
                apps(
                    lang,
                    text,
                    text,
                    if flag { &connected } else { &[] },
                    &AppsExtras {
                        notice: some,
                        error: some,
                        passkey_register: flag,
                        passkeys: if flag { &passkeys } else { &[] },
                    },
                ),
            ));
        }
        pages.push(("error", error(lang, text)));
        pages
    }

    #[test]
    fn every_page_renders_in_both_languages_with_the_right_script_flag() {
        for lang in [Lang::Ja, Lang::En] {
            for (name, page) in every_page(lang, "plain-value") {
                let html = html_of(&page);
                assert!(
                    html.starts_with("<!doctype html>\n<html lang=") && html.ends_with("</html>"),
                    "{name}: {html}"
                );
                assert!(
                    html.contains(&format!("<html lang=\"{}\">", lang.code())),
                    "{name}"
                );
                assert_eq!(
                    page.passkey_script(),
                    html.contains(SCRIPT_TAG),
                    "{name}: the CSP flag says what the page loads: {html}"
                );
                assert!(html.matches("<script").count() <= 1, "{name}: {html}");
            }
        }
        let en = html_of(&sign_in(Lang::En, "c", Some("Fintech"), None, "", false)).to_string();
        assert!(
            en.contains("<title>Sign in - fapi-guard Demo Bank</title>") && en.contains("<h1>Sign in</h1>")
        );
        assert!(en.contains("<strong>Fintech</strong> is asking for access"));
        assert!(en.contains("<a class=\"lang\" hreflang=\"ja\" href=\"/login?lang=ja\">日本語</a>"));
        let ja = html_of(&apps(Lang::Ja, "c", "u", &[], &AppsExtras::default())).to_string();
        assert!(ja.contains("<h1>連携中のアプリ</h1>") && ja.contains("href=\"/apps?lang=en\">English</a>"));
        assert!(ja.contains("<p id=\"no-apps\">"));
        let err = html_of(&error(Lang::En, "m")).to_string();
        assert!(
            !err.contains("class=\"lang\""),
            "no language switch on error pages"
        );
    }

    #[test]
    fn escapes_everything_interpolated() {
        for lang in [Lang::Ja, Lang::En] {
            for (name, page) in every_page(lang, HOSTILE) {
                let html = html_of(&page);
                assert!(!html.contains("<script>"), "{name}: {html}");
                assert!(!html.contains("x&'y"), "{name}: {html}");
                assert!(html.contains(HOSTILE_ESCAPED), "{name}: {html}");
                assert_eq!(
                    html.matches("<script").count(),
                    usize::from(page.passkey_script()),
                    "{name}: only the passkey script: {html}"
                );
            }
        }
        let html = html_of(&sign_in(Lang::En, "c\"srf", None, None, "a'b", false)).to_string();
        assert!(html.contains("name=\"csrf\" value=\"c&quot;srf\""), "{html}");
        assert!(html.contains("value=\"a&#x27;b\""), "{html}");
    }

    /// The templates print values only where HTML escaping is enough: in text and in quoted,
    /// non-URL attribute values; never in a URL, style or script, and nothing is marked safe.
    #[test]
    fn templates_print_no_urls_scripts_or_safe_markup() {
        for (name, source) in TEMPLATES {
            for unsafe_marker in ["|safe", "| safe", "autoescape", "mark_safe"] {
                assert!(!source.contains(unsafe_marker), "{name}: {unsafe_marker}");
            }
            for attr in [
                "href=\"",
                "src=\"",
                "action=\"",
                "style=\"",
                "data-options=\"",
                "formaction=\"",
            ] {
                for (at, _) in source.match_indices(attr) {
                    let value = source[at + attr.len()..].split('"').next().unwrap_or("");
                    assert!(
                        !value.contains("{{") && !value.contains("{%"),
                        "{name}: a template value in {attr}{value}\""
                    );
                }
            }
            for script in source.split("<script").skip(1) {
                let inside = script.split("</script>").next().unwrap_or("");
                assert!(
                    !inside.contains("{{") && !inside.contains("{%"),
                    "{name}: {inside}"
                );
            }
        }
        let css = TEMPLATES
            .iter()
            .find(|(n, _)| *n == "page.css")
            .map(|(_, s)| *s)
            .unwrap_or("{{");
        assert!(
            !css.contains("{{") && !css.contains("{%"),
            "the style sheet is static"
        );
    }

    #[test]
    fn consent_shows_each_transfer_and_asks_for_the_debtor_account() {
        let details = [serde_json::json!({"type": "payment_initiation",
            "instructedAmount": {"currency": "JPY", "amount": "5000"},
            "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"},
            "remittanceInformationUnstructured": "dinner"})];
        let transfers = crate::authorization_details::summaries(&details);
        let accounts = [account("taro-1"), account("taro-2")];
        let page = |lang, chosen| {
            consent(
                lang,
                &ConsentPage {
                    csrf: "c",
                    client_name: "Fintech",
                    scopes: &["payments"],
                    accounts: &accounts,
                    transfers: &transfers,
                    chosen,
                    user_name: "taro",
                    passkey_register: false,
                    notice: None,
                    error: None,
                },
            )
        };
        let ja = html_of(&page(Lang::Ja, None)).to_string();
        assert!(
            ja.contains("data-testid=\"transfer-amount\">5,000円</dd>"),
            "{ja}"
        );
        assert!(ja.contains("出金口座を選んでください"), "{ja}");
        let en = html_of(&page(Lang::En, None)).to_string();
        for want in [
            "data-testid=\"transfer-amount\">5,000 JPY</dd>",
            "data-testid=\"transfer-payee\">Hanako Yamada</dd>",
            "data-testid=\"transfer-payee-account\">hanako-1</dd>",
            "data-testid=\"transfer-reference\">dinner</dd>",
            "Choose the account to pay from",
            "formnovalidate",
        ] {
            assert!(en.contains(want), "{want}: {en}");
        }
        // One required radio button per account, none chosen for the user.
        assert_eq!(en.matches("type=\"radio\" name=\"debtor_account\"").count(), 2);
        assert_eq!(en.matches(" required ").count(), 2, "{en}");
        assert!(!en.contains(" checked"), "{en}");
        assert!(
            !en.contains("Your accounts"),
            "the choice replaces the plain list"
        );
        let again = html_of(&page(Lang::En, Some("taro-2"))).to_string();
        assert!(
            again.contains("value=\"taro-2\" required data-testid=\"debtor-account\" checked>"),
            "{again}"
        );
        // Without transfers: the plain account list, no choice.
        let plain = html_of(&consent(
            Lang::En,
            &ConsentPage {
                csrf: "c",
                client_name: "Fintech",
                scopes: &["accounts"],
                accounts: &accounts,
                transfers: &[],
                chosen: None,
                user_name: "taro",
                passkey_register: false,
                notice: None,
                error: None,
            },
        ))
        .to_string();
        assert!(
            plain.contains("Your accounts") && !plain.contains("debtor_account"),
            "{plain}"
        );
    }

    #[test]
    fn connected_apps_show_the_granted_transfers() {
        let g = grant("g1");
        let mut t = transfer("x");
        t.amount = "5,000".into();
        t.currency = "JPY".into();
        t.debtor_account = Some("taro-1".into());
        let connected = [ConnectedApp {
            grant: &g,
            client_name: "Fintech".into(),
            transfers: vec![t],
        }];
        let html = html_of(&apps(Lang::Ja, "c", "u", &connected, &AppsExtras::default())).to_string();
        assert!(html.contains(">5,000円</dd>"), "{html}");
        assert!(
            html.contains("data-testid=\"transfer-debtor\">taro-1</dd>"),
            "{html}"
        );
    }

    #[test]
    fn an_undefined_variable_is_an_error_not_an_empty_string() {
        let page = render("error.html", Lang::En, Switch::None, false, context! {});
        assert!(page.html().is_none(), "{page:?}");
    }

    #[test]
    fn scopes_in_plain_words_both_languages() {
        assert_eq!(
            scope_words("accounts", Lang::Ja),
            "口座情報・残高・入出金明細の参照"
        );
        assert_eq!(
            scope_words("accounts", Lang::En),
            "view your accounts, balances and transactions"
        );
        assert_eq!(scope_words("payments", Lang::Ja), "振込の実行");
        assert_eq!(scope_words("payments", Lang::En), "make transfers");
        assert_eq!(scope_words("x-custom", Lang::En), "x-custom");
    }

    #[test]
    fn times_in_jst() {
        assert_eq!(format_time(0), "1970-01-01 09:00 JST");
        assert_eq!(format_time(1_700_000_000), "2023-11-15 07:13 JST");
        assert_eq!(format_time(951_782_400), "2000-02-29 09:00 JST");
    }
}
