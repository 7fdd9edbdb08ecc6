//! The appliance packaging: the .deb's contents and maintainer scripts (installed and purged
//! with `dpkg --root` into a scratch root) and the udev rules' syntax (parsed by the real
//! `udevadm test` in a private mount namespace).

use std::path::{Path, PathBuf};
use std::process::Command;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> TestResult<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{cmd:?}: {e} (is the tool installed? `make test` installs it)"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("{cmd:?} failed with {}:\n{text}", out.status).into());
    }
    Ok(text)
}

fn build_deb(out: &Path) -> TestResult<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let built = run(Command::new(top().join("image/deb/build.sh"))
        .args([arch, env!("CARGO_BIN_EXE_local-assistant")])
        .arg(out)
        .env("DEB_COMPRESSION", "none"))?;
    Ok(PathBuf::from(built.trim()))
}

/// A scratch root with just enough for dpkg and systemd-sysusers.
fn scratch_root(dir: &Path) -> TestResult<PathBuf> {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info"))?;
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(root.join("var/lib/dpkg/status"), "")?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n")?;
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\naudio:x:29:\ndialout:x:20:\n",
    )?;
    Ok(root)
}

fn dpkg(root: &Path, args: &[&str]) -> TestResult<String> {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args))
}

#[test]
fn the_deb_carries_the_daemon_its_conffile_unit_rules_and_watchdog() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let deb = build_deb(tmp.path())?;
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb))?;
    for path in [
        "./usr/bin/local-assistant",
        "./etc/local-assistant/config.toml",
        "./lib/systemd/system/local-assistant.service",
        "./lib/udev/rules.d/60-local-assistant.rules",
        "./usr/lib/systemd/system.conf.d/local-assistant-watchdog.conf",
        "./usr/lib/sysusers.d/local-assistant.conf",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{listing}"
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x root/root")
                && l.ends_with("./usr/bin/local-assistant")),
        "{listing}"
    );
    assert!(
        !listing.contains(".onnx") && !listing.contains(".gguf"),
        "models must not be packaged"
    );
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"))?;
    assert_eq!(conffiles.trim(), "/etc/local-assistant/config.toml");
    let version = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Version"))?;
    assert_eq!(version.trim(), env!("CARGO_PKG_VERSION"));
    let watchdog =
        std::fs::read_to_string(top().join("systemd/system.conf.d/local-assistant-watchdog.conf"))?;
    assert!(watchdog.contains("[Manager]") && watchdog.contains("RuntimeWatchdogSec="));
    Ok(())
}

#[test]
fn installing_creates_the_user_protects_the_config_and_enables_the_unit_and_purge_cleans_up(
) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let deb = build_deb(tmp.path())?;
    let root = scratch_root(tmp.path())?;
    dpkg(&root, &["-i", &deb.to_string_lossy()])?;

    let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
    let user = passwd
        .lines()
        .find(|l| l.starts_with("local-assistant:"))
        .ok_or_else(|| format!("no user in\n{passwd}"))?;
    assert!(
        user.ends_with(":/var/lib/local-assistant:/usr/sbin/nologin"),
        "{user}"
    );
    let group = std::fs::read_to_string(root.join("etc/group"))?;
    for g in ["audio", "dialout", "gpio"] {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{g}:")))
            .unwrap_or_default();
        assert!(
            line.ends_with("local-assistant"),
            "local-assistant not in group {g}:\n{group}"
        );
    }
    let gid: u32 = group
        .lines()
        .find(|l| l.starts_with("local-assistant:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
        .ok_or("no local-assistant group")?;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root.join("etc/local-assistant/config.toml"))?;
    assert_eq!(
        (meta.mode() & 0o777, meta.uid(), meta.gid()),
        (0o640, 0, gid),
        "config must be root:local-assistant 0640"
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants/local-assistant.service");
    assert!(wants.symlink_metadata().is_ok(), "the unit was not enabled");

    // Purge removes the state directory and the enablement; a plain remove would keep data.
    std::fs::create_dir_all(root.join("var/lib/local-assistant"))?;
    std::fs::write(
        root.join("var/lib/local-assistant/local-assistant.db"),
        b"x",
    )?;
    dpkg(&root, &["--purge", "local-assistant"])?;
    assert!(!root.join("var/lib/local-assistant").exists());
    assert!(wants.symlink_metadata().is_err());
    assert!(!root.join("usr/bin/local-assistant").exists());
    Ok(())
}

/// Lines `udevadm test` printed about `file`, parsing it from /etc/udev/rules.d in a private
/// mount namespace (the host's rules are untouched).
fn udev_complaints(file: &Path) -> TestResult<Vec<String>> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("bad file name")?
        .to_owned();
    let script = format!(
        "mount -t tmpfs none /etc/udev/rules.d && cp '{}' /etc/udev/rules.d/ && udevadm test --action=add /sys/class/tty/console 2>&1",
        file.display()
    );
    let out = run(Command::new("unshare").args(["-m", "sh", "-c", &script]))?;
    assert!(
        out.contains(&format!("Reading rules file: /etc/udev/rules.d/{name}")),
        "{out}"
    );
    Ok(out
        .lines()
        .filter(|l| l.contains(&format!("{name}:")))
        // The gpio group is created by the package; the build machine need not have it.
        .filter(|l| !l.contains("Unknown group 'gpio'"))
        .map(str::to_owned)
        .collect())
}

#[test]
fn the_udev_rules_parse_without_complaints() -> TestResult {
    let complaints = udev_complaints(&top().join("udev/60-local-assistant.rules"))?;
    assert!(
        complaints.is_empty(),
        "udevadm complains:\n{}",
        complaints.join("\n")
    );

    // The check itself catches a broken rule.
    let tmp = tempfile::tempdir()?;
    let bad = tmp.path().join("61-broken.rules");
    std::fs::write(&bad, "SUBSYSTEM==\"tty\", GRUOP=\"dialout\"\n")?;
    let complaints = udev_complaints(&bad)?;
    assert!(
        complaints.iter().any(|l| l.contains("Invalid key")),
        "{complaints:?}"
    );
    Ok(())
}

#[test]
fn every_shell_script_passes_shellcheck() -> TestResult {
    let scripts = [
        ".ci/run",
        "cross/check.sh",
        "image/build.sh",
        "image/customize.sh",
        "image/inspect.sh",
        "image/boot-test.sh",
        "image/firstboot/firstboot",
        "image/deb/build.sh",
        "image/deb/postinst",
        "image/deb/prerm",
        "image/deb/postrm",
    ];
    let mut cmd = Command::new("shellcheck");
    cmd.args(["-S", "warning"]).current_dir(top());
    for s in scripts {
        assert!(top().join(s).exists(), "{s} is missing");
        cmd.arg(s);
    }
    run(&mut cmd)?;
    Ok(())
}

#[test]
fn the_image_profiles_agree_on_labels_and_enable_the_watchdog() -> TestResult {
    let read = |p: &str| std::fs::read_to_string(top().join(p));
    let config = read("image/profiles/rpi5/config.txt")?;
    for line in [
        "arm_64bit=1",
        "dtparam=watchdog=on",
        "dtparam=i2s=on",
        "dtparam=spi=on",
    ] {
        assert!(
            config.lines().any(|l| l.trim() == line),
            "config.txt lacks {line}"
        );
    }
    let cmdline = read("image/profiles/rpi5/cmdline.txt")?;
    assert_eq!(
        cmdline.lines().count(),
        1,
        "cmdline.txt must be a single line"
    );
    assert!(
        cmdline.contains("root=LABEL=la-root") && cmdline.contains("rootwait"),
        "{cmdline}"
    );
    let grub = read("image/profiles/qemu-arm64/grub.cfg")?;
    assert!(
        grub.contains("root=LABEL=la-root") && grub.contains("console=ttyAMA0"),
        "{grub}"
    );
    // The labels the boot configs and fstab use are the ones the build gives the filesystems.
    let build = read("image/build.sh")?;
    let customize = read("image/customize.sh")?;
    for label in ["la-root", "la-data"] {
        assert!(
            build.contains(&format!("-L {label}")),
            "build.sh does not label {label}"
        );
        assert!(
            customize.contains(&format!("LABEL={label}")),
            "fstab does not mount {label}"
        );
    }
    for label in ["LA-EFI", "LA-BOOT"] {
        assert!(
            build.contains(&format!("boot_label={label}")),
            "build.sh does not label {label}"
        );
        assert!(
            customize.contains(&format!("LABEL={label}")),
            "fstab does not mount {label}"
        );
    }
    let firstboot = read("image/firstboot/local-assistant-firstboot.service")?;
    assert!(firstboot.contains("Before=local-assistant.service"));
    assert!(firstboot.contains("StandardOutput=journal+console"));
    Ok(())
}
