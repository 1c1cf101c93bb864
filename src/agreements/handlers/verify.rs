//! The public verification page (`/agreements/verify`).

use super::*;

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Valid or not.
    pub valid: bool,
    /// The sentence saying so, in the page language.
    pub message: String,
}

#[derive(Template)]
#[template(path = "agreements/verify.html")]
pub(super) struct VerifyPage {
    page: Page,
    number: String,
    hash: String,
    verdict: Option<Verdict>,
    /// What the visitor left out (the number, the hash or the text), asked for.
    missing: Option<String>,
    public_key: String,
}
crate::impl_page!(VerifyPage);

/// What the visitor gives: the hash or the text.
pub(super) enum Claim {
    Hash(String),
    Text(String),
}

pub(super) fn verdict(
    page: &Page,
    conn: &mut crate::db::DbConnection,
    public_key: &str,
    number: &str,
    claim: &Claim,
) -> Result<Verdict, AppError> {
    let no = |key: &str| Verdict {
        valid: false,
        message: page.t(key).to_owned(),
    };
    let Some(a) = model::find_by_number(conn, number.trim())? else {
        return Ok(no("agreements.verify.unknown"));
    };
    let (Some(stored), Some(sig), Some(pk), Some(sealed_at)) = (
        &a.canonical_sha256,
        &a.signature,
        &a.public_key,
        a.sealed_at,
    ) else {
        return Ok(no("agreements.verify.not_sealed"));
    };
    let text = model::canonical_of(conn, &a)?;
    if model::sha256_hex(&text) != *stored
        || !crate::agreements::seal::verify_hex(pk, text.as_bytes(), sig)
    {
        return Ok(no("agreements.verify.altered"));
    }
    if pk != public_key {
        return Ok(no("agreements.verify.other_key"));
    }
    let matches = match claim {
        Claim::Hash(h) => h.trim().eq_ignore_ascii_case(stored),
        Claim::Text(t) => model::sha256_hex(t.trim_end_matches(['\r', '\n'])) == *stored,
    };
    if !matches {
        return Ok(no(match claim {
            Claim::Hash(_) => "agreements.verify.hash_mismatch",
            Claim::Text(_) => "agreements.verify.text_mismatch",
        }));
    }
    let state_label = page.t(&a.state.label_key()).to_owned();
    Ok(Verdict {
        valid: true,
        message: page.t_args(
            "agreements.verify.valid",
            &[
                ("number", a.number.clone()),
                ("regulator", a.regulator_name.clone()),
                ("at", page.time_min(sealed_at)),
                ("operator", a.operator_name.clone()),
                ("state", state_label),
            ],
        ),
    })
}

/// Query of the verification page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VerifyQuery {
    number: String,
    hash: String,
}

/// `GET /agreements/verify?number=&hash=`: the public verification page.
pub async fn verify_form(
    page: Page,
    state: web::Data<AppState>,
    q: crate::input::Query<VerifyQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let public_key = state.seal.public_hex();
    let (number, hash) = (
        q.number.chars().take(64).collect::<String>(),
        q.hash.chars().take(128).collect::<String>(),
    );
    let missing = match (number.trim().is_empty(), hash.trim().is_empty()) {
        (true, true) => None,
        (true, false) => Some("agreements.verify.number_required"),
        (false, true) => Some("agreements.verify.hash_required"),
        (false, false) => None,
    };
    if let Some(key) = missing {
        let missing = Some(page.t(key).to_owned());
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &VerifyPage {
                page,
                number,
                hash,
                verdict: None,
                missing,
                public_key,
            },
        );
    }
    let verdict = if number.trim().is_empty() {
        None
    } else {
        let (p, pk, n, h) = (
            page.clone(),
            public_key.clone(),
            number.clone(),
            hash.clone(),
        );
        Some(
            db(&state, move |conn| {
                verdict(&p, conn, &pk, &n, &Claim::Hash(h))
            })
            .await?,
        )
    };
    render(&VerifyPage {
        page,
        number,
        hash,
        verdict,
        missing: None,
        public_key,
    })
}

/// The verification form with pasted canonical text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VerifyTextForm {
    csrf: String,
    number: String,
    text: String,
}

/// `POST /agreements/verify`: verifies a pasted canonical text against a number.
pub async fn verify_text(
    page: Page,
    state: web::Data<AppState>,
    form: crate::input::Form<VerifyTextForm>,
) -> Result<HttpResponse, AppError> {
    page.check_csrf(&form.csrf)?;
    let form = form.into_inner();
    if form.text.len() > MAX_CANONICAL {
        return Err(AppError::http(
            StatusCode::PAYLOAD_TOO_LARGE,
            "common.error_too_large",
        ));
    }
    let public_key = state.seal.public_hex();
    let number: String = form.number.chars().take(64).collect();
    let missing = if number.trim().is_empty() {
        Some("agreements.verify.number_required")
    } else if form.text.trim().is_empty() {
        Some("agreements.verify.text_required")
    } else {
        None
    };
    if let Some(key) = missing {
        let missing = Some(page.t(key).to_owned());
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &VerifyPage {
                page,
                number,
                hash: String::new(),
                verdict: None,
                missing,
                public_key,
            },
        );
    }
    let (p, pk, n, text) = (page.clone(), public_key.clone(), number.clone(), form.text);
    let verdict = db(&state, move |conn| {
        verdict(&p, conn, &pk, &n, &Claim::Text(text))
    })
    .await?;
    render(&VerifyPage {
        page,
        number,
        hash: String::new(),
        verdict: Some(verdict),
        missing: None,
        public_key,
    })
}
