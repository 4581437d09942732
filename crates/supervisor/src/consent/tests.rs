use std::sync::Mutex;

use super::*;

/// What a broker recorded: each action with its input.
type Records = Arc<Mutex<Vec<(String, Value)>>>;

/// A broker for tests, with what it recorded.
fn broker(backends: &str, timeout_ms: u64) -> (Arc<Broker>, Records) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&records);
    let recorder: Recorder = Box::new(move |action, input, _, _| {
        sink.lock().unwrap().push((action.to_owned(), input));
        Ok(())
    });
    let broker = Broker::new(
        "0123456789ab",
        Backends::parse(backends, false).unwrap(),
        Duration::from_millis(timeout_ms),
        None,
        Some(recorder),
    );
    (broker, records)
}

fn ask(key: &str) -> Ask {
    Ask {
        capability: "net".into(),
        action: "connect".into(),
        key: key.into(),
        what: format!("connect to {key}"),
        why: vec!["not on the allowlist".into()],
        message: None,
        scopes: Vec::new(),
        timeout: None,
        mfa: None,
        person: false,
    }
}

/// Waits (bounded) until `broker` lists `n` pending requests, and returns them.
fn pending(broker: &Broker, n: usize) -> Vec<PendingRequest> {
    for _ in 0..500 {
        let listed = broker.pending();
        if listed.len() == n {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never {n} pending requests: {:?}", broker.pending());
}

fn actions(records: &Mutex<Vec<(String, Value)>>) -> Vec<String> {
    records
        .lock()
        .unwrap()
        .iter()
        .map(|(a, _)| a.clone())
        .collect()
}

#[test]
fn backends_parse_and_refuse_what_cannot_work() {
    assert_eq!(
        Backends::parse("auto", false).unwrap().list(),
        [Backend::Deny]
    );
    assert_eq!(
        Backends::parse("auto", true).unwrap().list(),
        [Backend::Terminal, Backend::Socket]
    );
    assert_eq!(
        Backends::parse("socket", false).unwrap().list(),
        [Backend::Socket]
    );
    assert!(Backends::parse("terminal", false).is_err());
    assert!(Backends::parse("allow,socket", false).is_err());
    assert!(Backends::parse("telepathy", false).is_err());
    assert!(!Backends::parse("deny", true).unwrap().interactive());
    assert_eq!(
        Backends::parse("socket", false).unwrap().context()["interactive"],
        true
    );
}

#[test]
fn scopes_parse() {
    assert_eq!(Scope::parse("once"), Ok(Scope::Once));
    assert_eq!(Scope::parse("10m"), Ok(Scope::Minutes(10)));
    assert_eq!(Scope::parse("minutes:5"), Ok(Scope::Minutes(5)));
    assert_eq!(Scope::parse("always"), Ok(Scope::Always));
    assert!(Scope::parse("0m").is_err());
    assert!(Scope::parse("forever").is_err());
    assert_eq!(Scope::Minutes(10).text(), "10m");
}

#[test]
fn the_allow_backend_never_answers_where_a_code_is_asked_for() {
    let (allow, _) = broker("allow", 1000);
    let mut needs_person = ask("net:a.example:443");
    needs_person.person = true;
    let answer = allow.ask(&needs_person);
    assert!(!answer.allow);
    assert!(answer.reason.contains("only a person"), "{}", answer.reason);
}

#[test]
fn fixed_backends_answer_without_asking() {
    let (allow, records) = broker("allow", 1000);
    assert!(allow.ask(&ask("net:a.example:443")).allow);
    let (deny, _) = broker("deny", 1000);
    let answer = deny.ask(&ask("net:a.example:443"));
    assert!(!answer.allow);
    assert!(
        answer.reason.contains("cordon approve"),
        "{}",
        answer.reason
    );
    assert!(actions(&records).is_empty());
}

#[test]
fn an_answer_for_the_session_covers_later_requests_and_is_recorded() {
    let (broker, records) = broker("socket", 10_000);
    let asking = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    let listed = pending(&broker, 1);
    assert_eq!(listed[0].what, "connect to net:a.example:443");
    assert_eq!(listed[0].scopes, ["once", "session", "minutes", "always"]);
    let answer = broker
        .answer(&listed[0].id, true, Scope::Session, "socket (test)", None)
        .unwrap();
    assert!(answer.allow);
    assert!(asking.join().unwrap().allow);
    // The second request is not asked.
    let again = broker.ask(&ask("net:a.example:443"));
    assert!(again.allow);
    assert_eq!(again.by, "earlier answer");
    assert!(broker.pending().is_empty());
    assert_eq!(actions(&records), ["prompt", "answer"]);
    let input = records.lock().unwrap()[1].1.clone();
    assert_eq!(input["consent"]["answer"]["by"], "socket (test)");
    assert_eq!(input["consent"]["answer"]["scope"], "session");
    // Another key is asked again.
    let other = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:b.example:443")))
    };
    let listed = pending(&broker, 1);
    broker
        .answer(&listed[0].id, false, Scope::Once, "socket (test)", None)
        .unwrap();
    assert!(!other.join().unwrap().allow);
}

#[test]
fn a_once_answer_covers_only_the_request_that_asked() {
    let (broker, records) = broker("socket", 10_000);
    let first = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    let id = pending(&broker, 1)[0].id.clone();
    let second = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    // Let the second join the question.
    std::thread::sleep(Duration::from_millis(100));
    broker
        .answer(&id, true, Scope::Once, "socket (test)", None)
        .unwrap();
    assert!(first.join().unwrap().allow);
    // The second is asked again, and denied this time.
    let again = loop {
        let listed = broker.pending();
        if let Some(request) = listed.first().filter(|r| r.id != id) {
            break request.id.clone();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    broker
        .answer(&again, false, Scope::Once, "socket (test)", None)
        .unwrap();
    assert!(!second.join().unwrap().allow);
    assert_eq!(actions(&records), ["prompt", "answer", "prompt", "answer"]);
}

#[test]
fn stopping_all_questions_denies_what_waits_and_what_comes() {
    let (broker, records) = broker("socket", 10_000);
    let waiting = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    pending(&broker, 1);
    broker.mute("terminal");
    assert!(!waiting.join().unwrap().allow);
    let later = broker.ask(&ask("net:b.example:443"));
    assert!(!later.allow);
    assert!(
        later.reason.contains("stopped all questions"),
        "{}",
        later.reason
    );
    assert_eq!(actions(&records), ["prompt", "mute"]);
}

#[test]
fn a_closed_session_denies_what_waits_on_the_record_and_asks_nothing_more() {
    let (broker, records) = broker("socket", 60_000);
    let waiting = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    pending(&broker, 1);
    broker.close();
    let answer = waiting.join().unwrap();
    assert!(!answer.allow);
    assert!(
        answer.reason.contains("the session ended"),
        "{}",
        answer.reason
    );
    let later = broker.ask(&ask("net:b.example:443"));
    assert!(!later.allow);
    assert!(
        later.reason.contains("the session is over"),
        "{}",
        later.reason
    );
    assert_eq!(actions(&records), ["prompt", "ended"]);
    // With nothing waiting, a session's end is recorded by the session, not here.
    let (quiet, records) = self::broker("socket", 60_000);
    quiet.close();
    assert!(actions(&records).is_empty());
}

#[test]
fn a_burst_of_identical_requests_asks_once() {
    let (broker, records) = broker("socket", 10_000);
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let broker = Arc::clone(&broker);
            std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
        })
        .collect();
    let listed = pending(&broker, 1);
    // Let every asker join before answering.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(broker.pending().len(), 1);
    broker
        .answer(&listed[0].id, true, Scope::Session, "socket (test)", None)
        .unwrap();
    for asker in askers {
        assert!(asker.join().unwrap().allow);
    }
    assert_eq!(actions(&records), ["prompt", "answer"]);
}

#[test]
fn no_answer_in_time_is_a_recorded_denial() {
    let (broker, records) = broker("socket", 200);
    let answer = broker.ask(&ask("net:a.example:443"));
    assert!(!answer.allow);
    assert_eq!(answer.by, "timeout");
    assert!(broker.pending().is_empty());
    assert_eq!(actions(&records), ["prompt", "timeout"]);
    // A late answer names a request that is gone.
    let id = answer.request.unwrap();
    let late = broker.answer(&id, true, Scope::Once, "socket (test)", None);
    assert!(late.unwrap_err().contains("no pending request"));
}

#[test]
fn answers_outside_what_is_offered_are_refused() {
    let (broker, _) = broker("socket", 10_000);
    let mut limited = ask("net:a.example:443");
    limited.scopes = vec!["once".into()];
    let asking = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&limited))
    };
    let id = pending(&broker, 1)[0].id.clone();
    let refused = broker.answer(&id, true, Scope::Session, "socket (test)", None);
    assert!(refused.unwrap_err().contains("does not offer `session`"));
    assert!(broker
        .answer("ffffffffffff", true, Scope::Once, "x", None)
        .is_err());
    // Still pending: a refused answer changes nothing.
    assert_eq!(broker.pending().len(), 1);
    broker
        .answer(&id, false, Scope::Once, "socket (test)", None)
        .unwrap();
    assert!(!asking.join().unwrap().allow);
}

#[test]
fn a_denial_cannot_be_remembered_and_a_failed_record_denies_and_leaves_nothing() {
    // `failing` names the record that cannot be written.
    let run = |failing: &'static str| {
        let dir = tempfile::tempdir().unwrap();
        let file = RememberedFile::at(dir.path().join("remembered.json"));
        let records: Recorder = Box::new(move |action, _, _, _| {
            if action == failing {
                Err("disk full".into())
            } else {
                Ok(())
            }
        });
        let broker = Broker::new(
            "0123456789ab",
            Backends::parse("socket", false).unwrap(),
            Duration::from_secs(10),
            Some(file.clone()),
            Some(records),
        );
        let asking = {
            let broker = Arc::clone(&broker);
            std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
        };
        let id = pending(&broker, 1)[0].id.clone();
        assert!(broker.answer(&id, false, Scope::Always, "x", None).is_err());
        let answer = broker.answer(&id, true, Scope::Always, "x", None).unwrap();
        (broker, file, answer, asking.join().unwrap())
    };
    // The answer's record fails: denied, nothing remembered, nothing granted.
    let (broker, file, answer, asked) = run("answer");
    assert!(!answer.allow && !asked.allow, "{answer:?}");
    assert_eq!(file.list().unwrap(), vec![]);
    assert!(broker.earlier("net:a.example:443").is_none());
    assert!(broker.take_pass("net:a.example:443").is_none());
    // The remembered entry's record fails: the entry is taken back; the answer holds for the
    // session only, and says so.
    let (broker, file, answer, asked) = run("remember");
    assert!(answer.allow && asked.allow);
    assert_eq!(answer.scope.as_deref(), Some("session"));
    assert!(
        answer.reason.contains("not remembered"),
        "{}",
        answer.reason
    );
    assert_eq!(file.list().unwrap(), vec![]);
    assert!(broker.earlier("net:a.example:443").unwrap().allow);
}

#[test]
fn always_is_remembered_in_the_file_and_too_many_questions_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let file = RememberedFile::at(dir.path().join("remembered.json"));
    let broker = Broker::new(
        "0123456789ab",
        Backends::parse("socket", false).unwrap(),
        Duration::from_secs(10),
        Some(file.clone()),
        None,
    );
    let askers: Vec<_> = (0..MAX_PENDING)
        .map(|i| {
            let broker = Arc::clone(&broker);
            std::thread::spawn(move || broker.ask(&ask(&format!("net:h{i}.example:443"))))
        })
        .collect();
    let listed = pending(&broker, MAX_PENDING);
    let over = broker.ask(&ask("net:one-more.example:443"));
    assert!(!over.allow);
    assert!(over.reason.contains("already wait"), "{}", over.reason);
    for request in &listed {
        broker
            .answer(&request.id, true, Scope::Always, "socket (test)", None)
            .unwrap();
    }
    for asker in askers {
        assert!(asker.join().unwrap().allow);
    }
    let keys: Vec<String> = file.list().unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), MAX_PENDING);
    assert!(keys.contains(&"net:h0.example:443".to_owned()));
}

#[test]
fn a_pass_covers_one_request() {
    let (broker, _) = broker("socket", 100);
    broker.pass(&ask("net:a.example:443"));
    assert!(broker.ask(&ask("net:a.example:443")).allow);
    // Used up: the next one is asked (and times out here).
    assert_eq!(broker.ask(&ask("net:a.example:443")).by, "timeout");
}

#[test]
fn an_answer_for_some_minutes_covers_the_key_meanwhile() {
    let (broker, _) = broker("socket", 10_000);
    let asking = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    let id = pending(&broker, 1)[0].id.clone();
    let answer = broker
        .answer(&id, true, Scope::Minutes(5), "socket (test)", None)
        .unwrap();
    assert_eq!(answer.scope.as_deref(), Some("5m"));
    assert!(asking.join().unwrap().allow);
    let again = broker.ask(&ask("net:a.example:443"));
    assert!(again.allow);
    assert_eq!(again.scope.as_deref(), Some("5m"));
    // Only that key.
    assert!(broker.earlier("net:b.example:443").is_none());
}

#[test]
fn what_the_program_chose_is_shown_without_anything_that_hides_or_reorders_text() {
    assert_eq!(
        printable("evil\u{202E}moc.elgoog\u{200B}\u{2028}\u{1b}[2J ok"),
        "evil?moc.elgoog???[2J ok"
    );
    assert_eq!(printable("paste.example:443"), "paste.example:443");
    assert_eq!(
        printable("proj\u{E0041}\u{3164}\u{034F}\u{FE0F}x"),
        "proj????x"
    );
}

#[test]
fn a_request_needing_a_code_never_joins_a_question_without_one() {
    let (broker, _) = broker("socket", 10_000);
    let plain = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&ask("net:a.example:443")))
    };
    pending(&broker, 1);
    let mut coded = ask("net:a.example:443");
    coded.mfa = Some(None);
    let store = tempfile::tempdir().unwrap();
    let mfa = MfaStore::at(store.path().join("mfa.json"));
    let enrollment = mfa::Enrollment::new("alice").unwrap();
    let now = mfa::now();
    mfa.confirm(
        &enrollment,
        &mfa::code_at(&enrollment.secret(), now).unwrap(),
        now,
    )
    .unwrap();
    broker.set_mfa(mfa);
    let needing = {
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || broker.ask(&coded))
    };
    // Two questions: one needs a code.
    let listed = pending(&broker, 2);
    let without = listed.iter().find(|r| !r.code).unwrap();
    broker
        .answer(&without.id, true, Scope::Session, "socket (test)", None)
        .unwrap();
    assert!(plain.join().unwrap().allow);
    let with = listed.iter().find(|r| r.code).unwrap();
    broker
        .answer(&with.id, false, Scope::Once, "socket (test)", None)
        .unwrap();
    assert!(!needing.join().unwrap().allow);
}
