//! `raw`: a near-zero-cost yardstick for `get`, not a client. Hand-encoded
//! frames over a blocking std `TcpStream` (`TCP_NODELAY`): one `write` of
//! the previous ack and the next `basic.get`, then blocking reads until the
//! body frame; no poller, no promise, no allocation per get beyond the
//! frame copies. Only `get` (other scenarios fail), only PLAIN auth, no
//! heartbeats. The gap between puka and this is puka's own cost per round
//! trip.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

fn frame(out: &mut Vec<u8>, ty: u8, channel: u16, payload: &[u8]) {
    out.push(ty);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(0xCE);
}

fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + args.len());
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    p
}

fn shortstr(v: &mut Vec<u8>, s: &str) {
    v.push(s.len() as u8);
    v.extend_from_slice(s.as_bytes());
}

/// `amqp://user:pass@host:port/vhost` (the vhost's `%2f` decoded).
fn parse_url(url: &str) -> Res<(String, String, String, String)> {
    let rest = url.strip_prefix("amqp://").ctx("raw: only amqp:// urls")?;
    let (auth, rest) = rest.split_once('@').unwrap_or(("guest:guest", rest));
    let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
    let (host, vhost) = rest.split_once('/').unwrap_or((rest, "%2f"));
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5672")
    };
    let vhost = if vhost.is_empty() {
        "/".to_string()
    } else {
        vhost.replace("%2f", "/").replace("%2F", "/")
    };
    Ok((user.into(), pass.into(), host, vhost))
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    len: usize,
}

impl Conn {
    /// The next frame: (type, payload).
    fn next(&mut self) -> Res<(u8, Vec<u8>)> {
        loop {
            if self.len >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]])
                    as usize;
                if self.len >= 8 + size {
                    let ty = self.buf[0];
                    let p = self.buf[7..7 + size].to_vec();
                    self.buf.copy_within(8 + size..self.len, 0);
                    self.len -= 8 + size;
                    return Ok((ty, p));
                }
                if 8 + size > self.buf.len() {
                    self.buf.resize(8 + size, 0);
                }
            }
            let n = self.s.read(&mut self.buf[self.len..]).ctx("raw read")?;
            if n == 0 {
                return Err("raw: connection closed".into());
            }
            self.len += n;
        }
    }

    /// The next method frame's payload (class, id, args), skipping others.
    fn method(&mut self) -> Res<Vec<u8>> {
        loop {
            let (ty, p) = self.next()?;
            if ty == 1 {
                if p.len() >= 4 && p[0..4] == [0, 10, 0, 50] {
                    return Err("raw: connection.close from the broker".into());
                }
                return Ok(p);
            }
        }
    }
}

fn connect(url: &str) -> Res<Conn> {
    let (user, pass, host, vhost) = parse_url(url)?;
    let s = TcpStream::connect(&host).ctx("raw connect")?;
    s.set_nodelay(true).ctx("raw nodelay")?;
    let mut c = Conn {
        s,
        buf: vec![0; 1 << 16],
        len: 0,
    };
    c.s.write_all(b"AMQP\x00\x00\x09\x01").ctx("raw write")?;
    c.method()?; // connection.start
    let mut a = vec![0, 0, 0, 0]; // no client properties
    shortstr(&mut a, "PLAIN");
    let resp = format!("\0{user}\0{pass}");
    a.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    a.extend_from_slice(resp.as_bytes());
    shortstr(&mut a, "en_US");
    let mut out = Vec::new();
    frame(&mut out, 1, 0, &method(10, 11, &a));
    c.s.write_all(&out).ctx("raw write")?;
    let tune = c.method()?;
    if tune.len() < 12 {
        return Err("raw: short connection.tune".into());
    }
    let mut a = tune[4..10].to_vec(); // channel_max, frame_max as offered
    a.extend_from_slice(&[0, 0]); // no heartbeats
    let mut out = Vec::new();
    frame(&mut out, 1, 0, &method(10, 31, &a));
    let mut a = Vec::new();
    shortstr(&mut a, &vhost);
    shortstr(&mut a, "");
    a.push(0);
    frame(&mut out, 1, 0, &method(10, 40, &a));
    frame(&mut out, 1, 1, &method(20, 10, &[0]));
    c.s.write_all(&out).ctx("raw write")?;
    c.method()?; // connection.open-ok
    c.method()?; // channel.open-ok
    Ok(c)
}

fn ack(out: &mut Vec<u8>, tag: u64) {
    let mut a = [0u8; 9];
    a[..8].copy_from_slice(&tag.to_be_bytes());
    frame(out, 1, 1, &method(60, 80, &a));
}

pub fn run(job: &Job) -> Res<Outcome> {
    if job.scenario != Scenario::Get {
        return Err(format!("raw: only get, not {}", job.scenario.name()));
    }
    get(job, Meter::process)
}

/// As `c_puka::get`: `job.n` timed gets, CPU counted by `meter`.
pub fn get(job: &Job, meter: fn() -> Meter) -> Res<Outcome> {
    let mut c = connect(&job.url)?;
    let mut get = Vec::new();
    let mut a = vec![0, 0];
    shortstr(&mut a, &job.queue);
    a.push(0); // no_ack off
    frame(&mut get, 1, 1, &method(60, 70, &a));
    let mut out = Vec::with_capacity(128);
    let mut lat = Vec::with_capacity(job.n);
    let mut tag = None;
    let mut got = 0;
    let mut bytes = 0;
    let mut m = meter();
    for i in 0..job.n + WARMUP {
        if i == WARMUP {
            m = meter();
        }
        let t = Instant::now();
        out.clear();
        if let Some(t) = tag.take() {
            ack(&mut out, t);
        }
        out.extend_from_slice(&get);
        c.s.write_all(&out).ctx("raw write")?;
        let ok = c.method()?;
        if ok.len() < 12 || ok[0..4] != [0, 60, 0, 71] {
            return Err("raw: expected basic.get-ok".into());
        }
        tag = Some(u64::from_be_bytes(ok[4..12].try_into().unwrap()));
        let (_, header) = c.next()?;
        let size = u64::from_be_bytes(header[4..12].try_into().unwrap()) as usize;
        let mut body = 0;
        while body < size {
            let (ty, p) = c.next()?;
            if ty != 3 {
                return Err("raw: expected a body frame".into());
            }
            body += p.len();
        }
        if i >= WARMUP {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            got += 1;
            bytes += body;
        }
    }
    let mut o = m.outcome(got);
    o.lat_us = lat;
    if let Some(t) = tag {
        out.clear();
        ack(&mut out, t);
    }
    // channel.close is not awaited; connection.close + close-ok ends cleanly.
    let mut a = vec![0, 200];
    shortstr(&mut a, "");
    a.extend_from_slice(&[0, 0, 0, 0]);
    frame(&mut out, 1, 0, &method(10, 50, &a));
    c.s.write_all(&out).ctx("raw write")?;
    c.method()?; // connection.close-ok
    if bytes != job.n * job.size {
        return Err(format!("raw: got {bytes} body bytes"));
    }
    Ok(o)
}
