//! The reconcile's status decisions, without a host: outcomes in, the
//! conditions, phase and Ready users read out.

use super::*;

const NOW: &str = "2026-12-02T10:00:00Z";

fn observed_ok() -> Outcome {
    Outcome::Observed(Observation {
        paused: false,
        down: vec![],
        probe: Some(Ok(
            "GET https://h:1/v2/ answered 401 over verified TLS".into()
        )),
    })
}

fn converged() -> Vec<Outcome> {
    vec![
        Outcome::SpecValid,
        Outcome::Tls(TlsOutcome::Generated {
            hostname: "h".into(),
            not_after: time::macros::date!(2027 - 12 - 02),
        }),
        Outcome::Images(Ok("present: r:2".into())),
        observed_ok(),
        storage(false, false),
    ]
}

fn storage(full: bool, low: bool) -> Outcome {
    Outcome::Storage(Ok(StorageSeen {
        path: "/srv/s".into(),
        free: 3 << 20,
        min_free: "10%".into(),
        full,
        low,
    }))
}

#[test]
fn low_or_full_storage_is_reported_and_the_registry_stays_ready() {
    for (full, low, reason) in [(true, false, "Full"), (false, true, "LowSpace")] {
        let mut o = converged();
        o.push(storage(full, low));
        let (list, phase) = verdict(&[], NOW, &o, false, true);
        assert_eq!(phase, Phase::Ready, "pulls are still served");
        let c = get(&list, T::StorageAvailable);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason));
        assert!(c.message.starts_with("/srv/s "), "{}", c.message);
        assert!(c.message.contains("3.0 MiB free"), "{}", c.message);
    }
}

fn get(list: &[Condition], t: T) -> &Condition {
    list.iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("{t} missing: {list:?}"))
}

fn types(list: &[Condition]) -> Vec<&str> {
    list.iter().map(|c| c.type_.as_str()).collect()
}

#[test]
fn a_converged_registry_is_ready_with_every_condition_true() {
    let (list, phase) = verdict(&[], NOW, &converged(), false, false);
    assert_eq!(phase, Phase::Ready);
    assert_eq!(
        types(&list),
        T::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()
    );
    assert!(list.iter().all(|c| c.status == "True"), "{list:?}");
    let ready = get(&list, T::Ready);
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        ("Healthy", "registry is serving")
    );
    assert_eq!(
        get(&list, T::CertificateValid).message,
        "generated certificate for h valid until 2027-12-02; renewed 30 days before"
    );
}

#[test]
fn transition_times_move_only_when_a_status_changes() {
    let (before, _) = verdict(&[], "2026-01-01T00:00:00Z", &converged(), false, false);
    let mut outcomes = converged();
    outcomes[2] = Outcome::Images(Err("image r:2 is missing".into()));
    let (after, phase) = verdict(&before, NOW, &outcomes, false, true);
    assert_eq!(phase, Phase::Degraded, "it served before");
    assert_eq!(get(&after, T::ImagesPresent).last_transition_time, NOW);
    assert_eq!(get(&after, T::Ready).last_transition_time, NOW);
    assert_eq!(
        get(&after, T::CertificateValid).last_transition_time,
        "2026-01-01T00:00:00Z"
    );
    let ready = get(&after, T::Ready);
    assert_eq!(ready.reason, "ImageMissing");
    assert_eq!(ready.message, "ImagesPresent: image r:2 is missing");
}

#[test]
fn a_refused_newcomer_fails_naming_the_conflict() {
    let outcomes = [
        Outcome::SpecValid,
        Outcome::Refused("spec.root is also a's".into()),
    ];
    let (list, phase) = verdict(&[], NOW, &outcomes, false, false);
    assert_eq!(phase, Phase::Failed);
    let ready = get(&list, T::Ready);
    assert_eq!(ready.reason, "Conflict");
    assert_eq!(ready.message, "UnitsActive: spec.root is also a's");
    for t in [T::CertificateValid, T::ImagesPresent, T::Healthy] {
        let c = get(&list, t);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "NotChecked")
        );
    }
}

#[test]
fn a_port_conflict_stands_over_what_is_observed() {
    let outcomes = [
        Outcome::SpecValid,
        Outcome::PortConflict {
            port: 8443,
            unit: "q-pod.service".into(),
        },
        Outcome::Observed(Observation {
            paused: false,
            down: vec!["q-pod.service is inactive".into()],
            probe: None,
        }),
    ];
    let (list, phase) = verdict(&[], NOW, &outcomes, false, false);
    assert_eq!(phase, Phase::Progressing);
    let units = get(&list, T::UnitsActive);
    assert_eq!(units.reason, "PortConflict");
    assert_eq!(
        units.message,
        "port 8443 is already in use by another program; q-pod.service not started"
    );
    assert_eq!(get(&list, T::Healthy).reason, "NotRunning");
}

#[test]
fn an_invalid_certificate_fails() {
    let outcomes = [
        Outcome::SpecValid,
        Outcome::Tls(TlsOutcome::Invalid(vec![
            "a.crt: expired.".into(),
            "Renew it.".into(),
        ])),
        observed_ok(),
    ];
    let (list, phase) = verdict(&[], NOW, &outcomes, false, true);
    assert_eq!(phase, Phase::Failed);
    let c = get(&list, T::CertificateValid);
    assert_eq!(c.reason, "InvalidCertificate");
    assert_eq!(c.message, "a.crt: expired. Renew it.");
}

#[test]
fn a_failed_step_leaves_what_it_did_not_reach_unchecked() {
    let outcomes = [
        Outcome::SpecValid,
        Outcome::Tls(TlsOutcome::Provided {
            cert_file: "/etc/pki/t.crt".into(),
            not_after: time::macros::date!(2027 - 01 - 01),
        }),
        Outcome::Failed("podman: connection refused".into()),
    ];
    let (list, phase) = verdict(&[], NOW, &outcomes, false, false);
    assert_eq!(phase, Phase::Progressing);
    let healthy = get(&list, T::Healthy);
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("Unknown", "ReconcileError")
    );
    assert_eq!(get(&list, T::ImagesPresent).reason, "NotChecked");
    assert_eq!(
        get(&list, T::CertificateValid).message,
        "/etc/pki/t.crt valid until 2027-01-01"
    );
    // The first condition that is not True explains Ready.
    assert_eq!(get(&list, T::Ready).reason, "NotChecked");
}

#[test]
fn a_unit_being_stopped_is_reported_until_observed() {
    let mut outcomes = vec![
        Outcome::SpecValid,
        Outcome::Stopping("q-app.service".into()),
    ];
    let (list, _) = verdict(&[], NOW, &outcomes, false, false);
    assert_eq!(get(&list, T::UnitsActive).reason, "Stopping");
    outcomes.push(Outcome::Observed(Observation {
        paused: false,
        down: vec!["q-app.service is deactivating".into()],
        probe: None,
    }));
    let (list, _) = verdict(&[], NOW, &outcomes, false, false);
    let units = get(&list, T::UnitsActive);
    assert_eq!(units.reason, "NotActive");
    assert_eq!(units.message, "q-app.service is deactivating");
}

#[test]
fn paused_is_its_own_phase() {
    let outcomes = [
        Outcome::SpecValid,
        Outcome::Images(Ok("present: r:2".into())),
        Outcome::Observed(Observation {
            paused: true,
            down: vec!["q-pod.service is inactive".into()],
            probe: None,
        }),
    ];
    let (list, phase) = verdict(&[], NOW, &outcomes, true, true);
    assert_eq!(phase, Phase::Paused);
    assert_eq!(get(&list, T::Ready).reason, "Paused");
    assert_eq!(get(&list, T::UnitsActive).reason, "Paused");
    assert_eq!(get(&list, T::Healthy).status, "Unknown");
}

#[test]
fn quays_initial_user_keeps_it_from_ready() {
    let mut outcomes = converged();
    outcomes.push(Outcome::InitUserFailed("POST …: answered 500".into()));
    let (list, phase) = verdict(&[], NOW, &outcomes, false, false);
    assert_eq!(phase, Phase::Progressing);
    assert_eq!(get(&list, T::Healthy).reason, "InitUserFailed");
}

#[test]
fn a_spec_not_applied_keeps_what_was_observed() {
    let (list, _) = verdict(&[], NOW, &converged(), false, false);
    let prev = Status {
        phase: Phase::Ready,
        endpoint: Some("https://h:1".into()),
        conditions: list,
        ..Status::default()
    };
    let s = not_applied(
        Some(&prev),
        &["spec.port: must be 1-65535".into()],
        Reason::InvalidSpec,
    );
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.endpoint, prev.endpoint);
    assert_eq!(types(&s.conditions), types(&prev.conditions));
    assert_eq!(
        get(&s.conditions, T::SpecValid).message,
        "spec.port: must be 1-65535"
    );
    assert_eq!(get(&s.conditions, T::Ready).reason, "InvalidSpec");
    assert_eq!(
        get(&s.conditions, T::Healthy),
        get(&prev.conditions, T::Healthy)
    );
}

#[test]
fn an_internal_fault_says_so_on_ready_only() {
    let (list, _) = verdict(&[], NOW, &converged(), false, false);
    let before = Status {
        phase: Phase::Ready,
        conditions: list,
        ..Status::default()
    };
    let after = internal_fault(before.clone(), "boom");
    assert_eq!(after.phase, Phase::Ready);
    let ready = get(&after.conditions, T::Ready);
    assert_eq!(ready.reason, "InternalError");
    assert!(ready.message.contains("(boom)"), "{}", ready.message);
    assert_eq!(after.conditions.len(), before.conditions.len());
}
