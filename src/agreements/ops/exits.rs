//! The exits (DOMAIN.md "Admission and exit"): the end of a term and every termination route,
//! rectification orders, the operator's termination request, the disposal confirmation.

use super::*;

/// Stops the operator's pending work under an ended agreement (the reactions registered in
/// [`crate::reactions::agreement_ended`]: its open computation jobs); returns how many pieces
/// of work it stopped. Every exit calls it inside its transaction and records the count in the
/// exit's audit entry (`pending_work_stopped`).
pub fn stop_pending_work(
    conn: &mut DbConnection,
    actor: &Actor,
    agreement: &Agreement,
    now: NaiveDateTime,
) -> QueryResult<u64> {
    crate::reactions::agreement_ended(conn, actor, agreement.id, now)
}

/// Closes the rectification orders and termination requests still open on an agreement that
/// ends (by their machines' `Close` transition), so no queue keeps them. The agreement's exit
/// entry records how many it closed.
pub(super) fn close_open_steps(
    conn: &mut DbConnection,
    id: i64,
    now: NaiveDateTime,
) -> Result<(usize, usize), AppError> {
    let mut closed = (0, 0);
    let open = model::rectifications_of(conn, id)?;
    for r in open
        .iter()
        .filter(|r| r.state.decide(RectificationAction::Close).is_ok())
    {
        let mv = Move {
            from: r.state,
            action: RectificationAction::Close,
            audit: None,
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                rectifications::table
                    .find(r.id)
                    .filter(rectifications::state.eq(from)),
            )
            .set((
                rectifications::state.eq(to),
                rectifications::decided_at.eq(now),
            ))
            .execute(conn)
        })?;
        closed.0 += 1;
    }
    let open = model::requests_of(conn, id)?;
    for q in open
        .iter()
        .filter(|q| q.state.decide(RequestAction::Close).is_ok())
    {
        let mv = Move {
            from: q.state,
            action: RequestAction::Close,
            audit: None,
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                termination_requests::table
                    .find(q.id)
                    .filter(termination_requests::state.eq(from)),
            )
            .set((
                termination_requests::state.eq(to),
                termination_requests::decided_at.eq(now),
            ))
            .execute(conn)
        })?;
        closed.1 += 1;
    }
    Ok(closed)
}

/// Ends an agreement by one of the four exit routes, with every consequence: the state, the
/// operator's API tokens revoked (unless another of its agreements still runs), its pending
/// work stopped, a credit record for routes (c) and (d), the emails to both parties, and the
/// audit entry; open rectification orders and termination requests are closed. Dataset access
/// ends with the state ([`crate::agreements::in_force_for`]). The disposal
/// confirmation is then outstanding until the operator files it.
pub fn end(
    conn: &mut DbConnection,
    actor: &Actor,
    a: &Agreement,
    reason: EndReason,
    end_note: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let to = check(a, AgreementAction::End(reason))?;
    diesel::insert_into(agreement_exits::table)
        .values((
            agreement_exits::agreement_id.eq(a.id),
            agreement_exits::reason.eq(reason.as_str()),
            agreement_exits::note.eq(end_note),
            agreement_exits::ended_by.eq(actor.user_id),
            agreement_exits::ended_at.eq(now),
        ))
        .execute(conn)?;
    let tokens_revoked = if model::org_has_running(conn, a.operator_org_id, a.id)? {
        0
    } else {
        let members = users::table
            .filter(users::org_id.eq(a.operator_org_id))
            .select(users::id);
        diesel::update(
            sessions::table
                .filter(sessions::user_id.eq_any(members))
                .filter(sessions::kind.eq("api"))
                .filter(sessions::revoked_at.is_null()),
        )
        .set(sessions::revoked_at.eq(now))
        .execute(conn)?
    };
    let stopped = stop_pending_work(conn, actor, a, now)?;
    let (rectifications_closed, requests_closed) = close_open_steps(conn, a.id, now)?;
    if matches!(
        reason,
        EndReason::TerminatedForBreach | EndReason::TerminatedForViolation
    ) {
        diesel::insert_into(credit_records::table)
            .values((
                credit_records::org_id.eq(a.operator_org_id),
                credit_records::kind.eq(reason.as_str()),
                credit_records::summary.eq(format!("{}: {}", a.number, end_note)),
                credit_records::agreement_id.eq(a.id),
                credit_records::created_by.eq(actor.user_id),
                credit_records::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    let ended = entry(
        actor,
        "end",
        a.id,
        serde_json::json!({
            "reason": reason.as_str(),
            "note": end_note,
            "api_tokens_revoked": tokens_revoked,
            "pending_work_stopped": stopped,
            "rectifications_closed": rectifications_closed,
            "termination_requests_closed": requests_closed,
        }),
    );
    move_agreement(conn, a, AgreementAction::End(reason), now, Some(ended))?;
    notify_parties(
        conn,
        a,
        "agreements.mail.terminated",
        &[
            ("number", a.number.clone()),
            (
                "reason_zh",
                crate::i18n::t(crate::i18n::Lang::Zh, &to.label_key()).to_owned(),
            ),
            (
                "reason_en",
                crate::i18n::t(crate::i18n::Lang::En, &to.label_key()).to_owned(),
            ),
            ("note", end_note.to_owned()),
        ],
    )?;
    Ok(())
}

/// Orders rectification within `days` working days.
pub fn order_rectification(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    order_text: &str,
    days: i32,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<i64, AppError> {
    let now = stamp(now);
    if !(1..=MAX_RECTIFICATION_DAYS).contains(&days) {
        return Err(
            AppError::invalid("agreements.err.rect_days").arg("max", MAX_RECTIFICATION_DAYS)
        );
    }
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        check(&a, AgreementAction::OrderRectification)?;
        let due_on = Calendar::load(conn)?.add_working_days(today, days as u32);
        let rid: i64 = diesel::insert_into(rectifications::table)
            .values((
                rectifications::agreement_id.eq(id),
                rectifications::state.eq(RectificationState::Ordered.as_str()),
                rectifications::order_text.eq(order_text),
                rectifications::working_days.eq(days),
                rectifications::due_on.eq(due_on),
                rectifications::ordered_by.eq(user.id),
                rectifications::ordered_at.eq(now),
                rectifications::decision_note.eq(""),
            ))
            .returning(rectifications::id)
            .get_result(conn)?;
        let actor = user.actor();
        let ordered = entry(
            &actor,
            "rectification_order",
            id,
            serde_json::json!({ "rectification": rid, "working_days": days, "due_on": due_on }),
        );
        move_agreement(
            conn,
            &a,
            AgreementAction::OrderRectification,
            now,
            Some(ordered),
        )?;
        notify_operator(
            conn,
            &a,
            "agreements.mail.rectification_order",
            &[
                ("number", a.number.clone()),
                ("due_on", due_on.to_string()),
                ("order", order_text.to_owned()),
            ],
        )?;
        Ok(rid)
    })
}

pub(super) fn load_rect(
    conn: &mut DbConnection,
    id: i64,
    rid: i64,
) -> Result<model::Rectification, AppError> {
    rectifications::table
        .find(rid)
        .filter(rectifications::agreement_id.eq(id))
        .select(model::Rectification::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(AppError::not_found)
}

/// The operator answers a rectification order with what it changed.
pub fn answer_rectification(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    rid: i64,
    answer: &str,
    now: NaiveDateTime,
    today: NaiveDate,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        load_for_operator(conn, user, id)?;
        let r = load_rect(conn, id, rid)?;
        let actor = user.actor();
        let mv = Move {
            from: r.state,
            action: RectificationAction::Answer {
                overdue: today > r.due_on,
            },
            audit: Some(entry(
                &actor,
                "rectification_answer",
                id,
                serde_json::json!({ "rectification": rid }),
            )),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                rectifications::table
                    .find(rid)
                    .filter(rectifications::state.eq(from)),
            )
            .set((
                rectifications::state.eq(to),
                rectifications::answer.eq(answer),
                rectifications::answered_by.eq(user.id),
                rectifications::answered_at.eq(now),
            ))
            .execute(conn)
        })?;
        Ok(())
    })
}

/// What the regulator decides on a rectification order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RectDecision {
    /// Accept the answer: back in force.
    Accept,
    /// Reject the answer: terminate for breach.
    Reject,
    /// The deadline passed unanswered: terminate for breach.
    TerminateUnanswered,
}

/// The regulator decides on a rectification order.
pub fn decide_rectification(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    rid: i64,
    decision: RectDecision,
    note_text: &str,
    (now, today): (NaiveDateTime, NaiveDate),
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        let r = load_rect(conn, id, rid)?;
        let overdue = today > r.due_on;
        let action = match decision {
            RectDecision::Accept => RectificationAction::Accept,
            RectDecision::Reject => RectificationAction::Reject,
            RectDecision::TerminateUnanswered => {
                RectificationAction::TerminateUnanswered { overdue }
            }
        };
        let to = r.state.decide(action)?;
        let actor = user.actor();
        let mv = Move {
            from: r.state,
            action,
            audit: Some(entry(
                &actor,
                "rectification_decide",
                id,
                serde_json::json!({ "rectification": rid, "decision": to.as_str() }),
            )),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                rectifications::table
                    .find(rid)
                    .filter(rectifications::state.eq(from)),
            )
            .set((
                rectifications::state.eq(to),
                rectifications::decision_note.eq(note_text),
                rectifications::decided_by.eq(user.id),
                rectifications::decided_at.eq(now),
            ))
            .execute(conn)
        })?;
        match to {
            RectificationState::Accepted => {
                // The decision's entry above records the agreement's return to force.
                move_agreement(conn, &a, AgreementAction::RectificationAccepted, now, None)?;
            }
            _ => {
                let why = if note_text.is_empty() {
                    r.order_text.clone()
                } else {
                    note_text.to_owned()
                };
                end(conn, &actor, &a, EndReason::TerminatedForBreach, &why, now)?;
            }
        }
        Ok(())
    })
}

/// The operator asks to end its agreement early.
pub fn request_termination(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    reason: &str,
    now: NaiveDateTime,
) -> Result<i64, AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load_for_operator(conn, user, id)?;
        check(&a, AgreementAction::End(EndReason::TerminatedOnRequest))?;
        let pending: i64 = termination_requests::table
            .filter(termination_requests::agreement_id.eq(id))
            .filter(termination_requests::state.eq(RequestState::Pending.as_str()))
            .count()
            .get_result(conn)?;
        if pending > 0 {
            return Err(AppError::conflict("agreements.refuse.request_pending"));
        }
        let tid: i64 = diesel::insert_into(termination_requests::table)
            .values((
                termination_requests::agreement_id.eq(id),
                termination_requests::state.eq(RequestState::Pending.as_str()),
                termination_requests::reason.eq(reason),
                termination_requests::requested_by.eq(user.id),
                termination_requests::requested_at.eq(now),
                termination_requests::decision_note.eq(""),
            ))
            .returning(termination_requests::id)
            .get_result(conn)?;
        entry(
            &user.actor(),
            "termination_request",
            id,
            serde_json::json!({ "request": tid, "reason": reason }),
        )
        .record(conn)?;
        Ok(tid)
    })
}

/// The regulator approves (the agreement ends) or refuses a termination request.
pub fn decide_request(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    tid: i64,
    action: RequestAction,
    note_text: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        let req: model::TerminationRequest = termination_requests::table
            .find(tid)
            .filter(termination_requests::agreement_id.eq(id))
            .select(model::TerminationRequest::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(AppError::not_found)?;
        let to = req.state.decide(action)?;
        let actor = user.actor();
        let mv = Move {
            from: req.state,
            action,
            audit: Some(entry(
                &actor,
                "termination_request_decide",
                id,
                serde_json::json!({ "request": tid, "decision": to.as_str() }),
            )),
        };
        workflow::commit(conn, mv, |conn, from, to| {
            diesel::update(
                termination_requests::table
                    .find(tid)
                    .filter(termination_requests::state.eq(from)),
            )
            .set((
                termination_requests::state.eq(to),
                termination_requests::decision_note.eq(note_text),
                termination_requests::decided_by.eq(user.id),
                termination_requests::decided_at.eq(now),
            ))
            .execute(conn)
        })?;
        if to == RequestState::Approved {
            end(
                conn,
                &actor,
                &a,
                EndReason::TerminatedOnRequest,
                &req.reason,
                now,
            )?;
        }
        let (zh, en) = (
            crate::i18n::t(crate::i18n::Lang::Zh, &to.label_key()).to_owned(),
            crate::i18n::t(crate::i18n::Lang::En, &to.label_key()).to_owned(),
        );
        notify_operator(
            conn,
            &a,
            "agreements.mail.request_decided",
            &[
                ("number", a.number.clone()),
                ("decision_zh", zh),
                ("decision_en", en),
                ("note", note_text.to_owned()),
            ],
        )?;
        Ok(())
    })
}

/// The regulator ends an agreement at once for a violation of law, stating the legal basis.
pub fn terminate_for_violation(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    legal_basis: &str,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load(conn, id)?;
        end(
            conn,
            &user.actor(),
            &a,
            EndReason::TerminatedForViolation,
            legal_basis,
            now,
        )
    })
}

/// The operator's data-disposal confirmation after the end.
#[derive(Debug, Clone)]
pub struct Disposal {
    /// What was deleted.
    pub what: String,
    /// When.
    pub on: NaiveDate,
    /// By whom.
    pub by: String,
}

/// The operator files its disposal confirmation (once, after the end).
pub fn file_disposal(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    d: &Disposal,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let now = stamp(now);
    db::write_transaction(conn, |conn| {
        let a = load_for_operator(conn, user, id)?;
        if !matches!(a.state, AgreementState::Ended(_)) {
            return Err(AppError::conflict("agreements.refuse.disposal_not_ended"));
        }
        if a.disposal_filed_at.is_some() {
            return Err(AppError::conflict("agreements.refuse.disposal_filed"));
        }
        diesel::update(agreement_exits::table.find(id))
            .set((
                agreement_exits::disposal_what.eq(&d.what),
                agreement_exits::disposal_on.eq(d.on),
                agreement_exits::disposal_by.eq(&d.by),
                agreement_exits::disposal_filed_by.eq(user.id),
                agreement_exits::disposal_filed_at.eq(now),
            ))
            .execute(conn)?;
        entry(
            &user.actor(),
            "disposal_confirm",
            id,
            serde_json::json!({ "on": d.on, "by": d.by }),
        )
        .record(conn)?;
        Ok(())
    })
}
