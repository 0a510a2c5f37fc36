//! The HTML a person sees: sign-in, TOTP, consent, connected apps and error pages, in Japanese and
//! English, server-rendered with inline CSS. The only script is `/assets/passkey.js`
//! ([`PASSKEY_SCRIPT_TAG`]), on pages with a passkey button; no inline script or event handler.
//! Everything interpolated is HTML-escaped.
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

use crate::store::{Account, Grant};

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

    fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    fn pick(self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

/// HTML escaping for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

const CSS: &str = "*{box-sizing:border-box}body{margin:0;font-family:system-ui,-apple-system,'Hiragino Sans','Noto Sans JP',sans-serif;background:#f3f5f8;color:#1c2430;line-height:1.6}\
main{max-width:30rem;margin:3rem auto;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem}\
header{display:flex;justify-content:space-between;align-items:center;margin-bottom:1.5rem;font-size:.9rem;color:#5a6573}\
.bank{font-weight:700;color:#0b4f8a}h1{font-size:1.4rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .3rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;padding:.6rem;border:1px solid #b8c1cc;border-radius:6px;font-size:1rem}\
button{padding:.65rem 1.2rem;border:0;border-radius:6px;font-size:1rem;cursor:pointer;background:#0b4f8a;color:#fff}\
button.secondary{background:#e6e9ee;color:#1c2430}button.danger{background:#b3261e}form.inline{display:inline}ul.passkeys li{margin:.4rem 0}.actions{display:flex;gap:.8rem;margin-top:1.5rem}\
.error{background:#fdecea;color:#8a1c14;border-radius:6px;padding:.7rem;margin-bottom:1rem}.notice{background:#e8f4ea;color:#1e5b2a;border-radius:6px;padding:.7rem;margin-bottom:1rem}\
ul{padding-left:1.2rem}.muted{color:#5a6573;font-size:.9rem}.app{border-top:1px solid #e6e9ee;padding:1rem 0}.app:first-of-type{border-top:0}\
.code{letter-spacing:.4em;font-size:1.4rem;text-align:center}.passkey{border-top:1px solid #e6e9ee;margin-top:1.5rem}";

/// The one script a page may load (CSP `script-src 'self'` on the pages that carry it).
pub const PASSKEY_SCRIPT_TAG: &str = "<script src=\"/assets/passkey.js\" defer></script>";

/// A passkey ceremony form: the script (`/assets/passkey.js`) fetches the options from `options`
/// (POST, with the form's `csrf`), runs `navigator.credentials.get` (`kind` "get") or `.create`
/// ("create"), puts `JSON.stringify`-ed credential in the hidden `credential` field and submits the
/// form to `action`; without the script the form posts an empty credential, which is refused.
fn passkey_form(lang: Lang, csrf: &str, kind: &str, label: &str) -> String {
    let (action, options, testid) = match kind {
        "get" => ("/login/passkey", "/login/passkey/options", "passkey-sign-in"),
        _ => (
            "/passkey/register",
            "/passkey/register/options",
            "passkey-register",
        ),
    };
    format!(
        "<form class=\"passkey\" method=\"post\" action=\"{action}\" data-passkey=\"{kind}\" data-options=\"{options}\" id=\"{testid}-form\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"credential\" value=\"\">\
<p class=\"error\" role=\"alert\" data-testid=\"passkey-error\" data-message=\"{message}\" hidden></p>\
<div class=\"actions\"><button type=\"submit\" class=\"secondary\" id=\"{testid}\" data-testid=\"{testid}\">{label}</button></div></form>{PASSKEY_SCRIPT_TAG}",
        csrf = esc(csrf),
        message = esc(lang.pick(
            "パスキーの操作が完了しませんでした。もう一度お試しください。",
            "The passkey step did not complete. Try again."
        )),
        label = esc(label),
    )
}

/// The page frame: bank name, language switch (to `switch_path?lang=..` when given), title, body.
pub fn layout(lang: Lang, title: &str, switch_path: Option<&str>, body: &str) -> String {
    let bank = lang.pick("fapi-guard デモ銀行", "fapi-guard Demo Bank");
    let switch = match switch_path {
        Some(path) => {
            let other = lang.other();
            let label = match other {
                Lang::Ja => "日本語",
                Lang::En => "English",
            };
            let sep = if path.contains('?') { '&' } else { '?' };
            format!(
                "<a class=\"lang\" hreflang=\"{code}\" href=\"{path}{sep}lang={code}\">{label}</a>",
                code = other.code(),
                path = esc(path)
            )
        }
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} - {bank}</title><style>{CSS}</style></head><body><main><header><span class=\"bank\">{bank}</span>{switch}</header>\
<h1>{title}</h1>{body}</main></body></html>\n",
        code = lang.code(),
        title = esc(title),
    )
}

fn error_box(message: Option<&str>) -> String {
    message
        .map(|m| {
            format!(
                "<div class=\"error\" role=\"alert\" data-testid=\"error\">{}</div>",
                esc(m)
            )
        })
        .unwrap_or_default()
}

fn notice_box(message: Option<&str>) -> String {
    message
        .map(|m| {
            format!(
                "<div class=\"notice\" role=\"status\" data-testid=\"notice\">{}</div>",
                esc(m)
            )
        })
        .unwrap_or_default()
}

/// The sign-in form (username + password), and "Sign in with a passkey" when `passkey` (the issuer
/// can be a WebAuthn RP). `client_name` is the app asking, if any.
pub fn sign_in(
    lang: Lang,
    csrf: &str,
    client_name: Option<&str>,
    error: Option<&str>,
    username: &str,
    passkey: bool,
) -> String {
    let intro = match client_name {
        Some(name) => format!(
            "<p>{}</p>",
            match lang {
                Lang::Ja => format!("<strong>{}</strong> があなたの口座へのアクセスを求めています。続けるにはサインインしてください。", esc(name)),
                Lang::En => format!("<strong>{}</strong> is asking for access to your accounts. Sign in to continue.", esc(name)),
            }
        ),
        None => format!("<p>{}</p>", lang.pick("連携中のアプリを確認するにはサインインしてください。", "Sign in to see the apps connected to your accounts.")),
    };
    let body = format!(
        "{intro}{error}<form method=\"post\" action=\"/login\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"username\">{user_label}</label><input type=\"text\" id=\"username\" data-testid=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" maxlength=\"64\" required autofocus>\
<label for=\"password\">{pass_label}</label><input type=\"password\" id=\"password\" data-testid=\"password\" name=\"password\" autocomplete=\"current-password\" maxlength=\"256\" required>\
<div class=\"actions\"><button type=\"submit\" id=\"sign-in\" data-testid=\"sign-in\">{submit}</button></div></form>{passkey}",
        error = error_box(error),
        csrf = esc(csrf),
        username = esc(username),
        user_label = lang.pick("ユーザー名", "Username"),
        pass_label = lang.pick("パスワード", "Password"),
        submit = lang.pick("サインイン", "Sign in"),
        passkey = if passkey {
            passkey_form(
                lang,
                csrf,
                "get",
                lang.pick("パスキーでサインイン", "Sign in with a passkey"),
            )
        } else {
            String::new()
        },
    );
    layout(lang, lang.pick("サインイン", "Sign in"), Some("/login"), &body)
}

/// The step-up page: the TOTP code (RFC 6238, from an authenticator app) when `totp`, and/or a
/// passkey when `passkey` (the user has one).
pub fn totp(lang: Lang, csrf: &str, error: Option<&str>, totp: bool, passkey: bool) -> String {
    let form = if totp {
        format!(
            "<form method=\"post\" action=\"/login/totp\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"code\">{label}</label><input class=\"code\" type=\"text\" id=\"code\" data-testid=\"totp-code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" autocomplete=\"one-time-code\" required autofocus>\
<div class=\"actions\"><button type=\"submit\" id=\"verify\" data-testid=\"totp-submit\">{submit}</button></div></form>",
            csrf = esc(csrf),
            label = lang.pick("確認コード（6桁）", "Verification code (6 digits)"),
            submit = lang.pick("確認", "Verify"),
        )
    } else {
        String::new()
    };
    let passkey = if passkey {
        passkey_form(
            lang,
            csrf,
            "get",
            lang.pick("パスキーで確認", "Use a passkey instead"),
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p>{intro}</p>{error}{form}{passkey}",
        intro = if totp {
            lang.pick(
                "この操作には追加の確認が必要です。認証アプリに表示されている6桁のコードを入力してください。",
                "This needs one more check. Enter the 6-digit code shown in your authenticator app.",
            )
        } else {
            lang.pick(
                "この操作には追加の確認が必要です。パスキーで確認してください。",
                "This needs one more check. Confirm with your passkey.",
            )
        },
        error = error_box(error),
    );
    let title = if totp {
        lang.pick("確認コード", "Verification code")
    } else {
        lang.pick("追加の確認", "One more check")
    };
    layout(lang, title, Some("/login"), &body)
}

/// What the consent page shows.
pub struct ConsentPage<'a> {
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub scopes: &'a [&'a str],
    pub accounts: &'a [Account],
    pub user_name: &'a str,
    /// Offer "Register a passkey" (the issuer can be a WebAuthn RP).
    pub passkey_register: bool,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The consent page: who asks, for what (in plain words), on which accounts.
pub fn consent(lang: Lang, page: &ConsentPage<'_>) -> String {
    let ConsentPage {
        csrf,
        client_name,
        scopes,
        accounts,
        user_name,
        ..
    } = *page;
    let items: String = scopes
        .iter()
        .map(|s| format!("<li>{}</li>", esc(&scope_words(s, lang))))
        .collect();
    let account_items: String = accounts
        .iter()
        .map(|a| {
            format!(
                "<li>{} <span class=\"muted\">({})</span></li>",
                esc(&a.name),
                esc(&a.account_id)
            )
        })
        .collect();
    let accounts_html = if accounts.is_empty() {
        format!(
            "<p class=\"muted\">{}</p>",
            lang.pick("口座がありません。", "You have no accounts.")
        )
    } else {
        format!("<ul>{account_items}</ul>")
    };
    let register = if page.passkey_register {
        passkey_form(
            lang,
            csrf,
            "create",
            lang.pick("パスキーを登録", "Register a passkey"),
        )
    } else {
        String::new()
    };
    let body = format!(
        "{notice}{error}<p>{asks}</p><ul id=\"scopes\">{items}</ul><h2 style=\"font-size:1rem\">{accounts_label}</h2>{accounts_html}\
<p class=\"muted\">{signed_in}: {user}</p><p class=\"muted\">{revoke_hint}</p>\
<form method=\"post\" action=\"/consent\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<div class=\"actions\"><button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\" data-testid=\"approve\">{approve}</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\" data-testid=\"deny\" class=\"secondary\">{deny}</button></div></form>{register}",
        notice = notice_box(page.notice),
        error = error_box(page.error),
        asks = match lang {
            Lang::Ja => format!("<strong>{}</strong> が次のことを求めています:", esc(client_name)),
            Lang::En => format!("<strong>{}</strong> would like to:", esc(client_name)),
        },
        accounts_label = lang.pick("対象の口座", "Your accounts"),
        signed_in = lang.pick("サインイン中", "Signed in as"),
        user = esc(user_name),
        revoke_hint = lang.pick(
            "許可はいつでも「連携中のアプリ」(/apps) から取り消せます。",
            "You can take this access back at any time under \"Connected apps\" (/apps)."
        ),
        csrf = esc(csrf),
        approve = lang.pick("許可する", "Approve"),
        deny = lang.pick("拒否する", "Deny"),
    );
    layout(
        lang,
        lang.pick("アクセスの許可", "Allow access"),
        Some("/login"),
        &body,
    )
}

/// One connected app for the apps page.
pub struct ConnectedApp<'a> {
    pub grant: &'a Grant,
    pub client_name: String,
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

/// FISC item 38: every client holding a live grant, with scopes, when granted and last used, and a
/// Revoke button each.
pub fn apps(
    lang: Lang,
    csrf: &str,
    user_name: &str,
    apps: &[ConnectedApp<'_>],
    extras: &AppsExtras<'_>,
) -> String {
    let notice = format!("{}{}", notice_box(extras.notice), error_box(extras.error));
    let list: String = apps
        .iter()
        .map(|a| {
            let scopes: String =
                a.grant.scope.split_whitespace().map(|s| format!("<li>{}</li>", esc(&scope_words(s, lang)))).collect();
            format!(
                "<div class=\"app\" data-testid=\"app\" data-client-id=\"{client_id}\"><strong class=\"client\">{name}</strong><ul>{scopes}</ul>\
<p class=\"muted\">{granted}: {g}<br>{used}: {u}</p>\
<form method=\"post\" action=\"/apps/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"grant_id\" value=\"{id}\"><button type=\"submit\" class=\"danger\" data-testid=\"revoke\">{revoke}</button></form></div>",
                client_id = esc(&a.grant.client_id),
                name = esc(&a.client_name),
                granted = lang.pick("許可した日時", "Granted"),
                g = format_time(a.grant.created_at),
                used = lang.pick("最終利用", "Last used"),
                u = format_time(a.grant.last_used_at),
                csrf = esc(csrf),
                id = esc(&a.grant.grant_id),
                revoke = lang.pick("取り消す", "Revoke"),
            )
        })
        .collect();
    let list = if apps.is_empty() {
        format!(
            "<p id=\"no-apps\">{}</p>",
            lang.pick(
                "連携中のアプリはありません。",
                "No apps are connected to your accounts."
            )
        )
    } else {
        list
    };
    let register = if extras.passkey_register {
        passkey_form(
            lang,
            csrf,
            "create",
            lang.pick("パスキーを登録", "Register a passkey"),
        )
    } else {
        String::new()
    };
    let passkeys = passkey_list(lang, csrf, extras.passkeys);
    let body = format!(
        "{notice}<p>{intro}</p>{list}<p class=\"muted\">{signed_in}: {user}</p>\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"secondary\" data-testid=\"sign-out\">{logout}</button></form>{passkeys}{register}",
        intro = lang.pick(
            "あなたの口座にアクセスできるアプリの一覧です。心当たりのないアプリや使わなくなったアプリは取り消してください。取り消すと、そのアプリは数秒以内にアクセスできなくなります。",
            "These apps can access your accounts. Revoke any you do not recognise or no longer use: a revoked app loses access within seconds."
        ),
        signed_in = lang.pick("サインイン中", "Signed in as"),
        user = esc(user_name),
        csrf = esc(csrf),
        logout = lang.pick("サインアウト", "Sign out"),
    );
    layout(
        lang,
        lang.pick("連携中のアプリ", "Connected apps"),
        Some("/apps"),
        &body,
    )
}

/// The user's passkeys on the connected-apps page, each with a Remove button (nothing when none).
fn passkey_list(lang: Lang, csrf: &str, passkeys: &[String]) -> String {
    if passkeys.is_empty() {
        return String::new();
    }
    let rows: String = passkeys
        .iter()
        .map(|id| {
            // The first characters name it well enough; the form carries the whole ID.
            let short: String = id.chars().take(12).collect();
            format!(
                "<li data-testid=\"passkey\"><code>{short}…</code> <form method=\"post\" action=\"/apps/passkeys/remove\" class=\"inline\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"credential_id\" value=\"{id}\">\
<button type=\"submit\" class=\"danger\" data-testid=\"remove-passkey\">{remove}</button></form></li>",
                short = esc(&short),
                csrf = esc(csrf),
                id = esc(id),
                remove = lang.pick("削除", "Remove"),
            )
        })
        .collect();
    format!(
        "<h2>{title}</h2><p class=\"muted\">{hint}</p><ul class=\"passkeys\">{rows}</ul>",
        title = lang.pick("パスキー", "Passkeys"),
        hint = lang.pick(
            "なくした端末や使わなくなった端末のパスキーは削除してください。削除したパスキーではサインインできません。",
            "Remove the passkey of a device you lost or no longer use: a removed passkey can no longer sign in."
        ),
    )
}

/// An error page for problems that cannot go back to the app (no verified redirect URI).
pub fn error(lang: Lang, message: &str) -> String {
    let body = format!(
        "{}<p>{}</p>",
        error_box(Some(message)),
        lang.pick(
            "アプリに戻って、もう一度やり直してください。",
            "Go back to the app and start again."
        )
    );
    layout(lang, lang.pick("続行できません", "Cannot continue"), None, &body)
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

    #[test]
    fn escapes_everything_interpolated() {
        let html = sign_in(Lang::En, "c\"srf", Some("<script>x</script>"), None, "a'b", true);
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("value=\"c&quot;srf\""));
        assert!(html.contains("value=\"a&#39;b\""));
        assert_eq!(html.matches("<script").count(), 1, "only the passkey script");
        assert!(html.contains(PASSKEY_SCRIPT_TAG) && html.contains("data-testid=\"passkey-sign-in\""));
        let html = sign_in(Lang::Ja, "c", None, None, "", false);
        assert!(!html.contains("<script") && !html.contains("data-passkey"));
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
