//! `hostile-tools`: a library skill whose functions attack `cordon mcp --skill`: types too
//! large to describe, a result that swells when converted, secrets on standard error, a
//! long wait in a host call.

wit_bindgen::generate!({
    path: "wit",
    world: "hostile-tools",
});

struct Hostile;

impl Guest for Hostile {
    fn wide(_x: L4) {}

    fn bigres(n: u32) -> Vec<Result<(), ()>> {
        vec![Ok(()); n as usize]
    }

    fn leak() -> String {
        eprintln!("aws_access_key_id=AKIAQYLPMN5HHHFPZAM2");
        "done".into()
    }

    fn nap(ms: u64) -> String {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        format!("slept {ms} ms")
    }
}

export!(Hostile);
