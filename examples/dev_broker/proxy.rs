//! One client connection: its requests go to the mock cluster's listener,
//! except those the dev broker answers itself; the answers go back in the
//! order of the requests, as Kafka clients expect.

use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// An answer slower than this is logged (at debug level).
const SLOW_ANSWER: Duration = Duration::from_secs(1);

use anyhow::{Context, Result};
use crossbeam_channel::{unbounded, Receiver};

use crate::admin_api;
use crate::mend::{self, API_VERSIONS, FETCH, METADATA};
use crate::topics::Topics;
use crate::wire::{read_frame, write_frame, Reader, RequestHeader};

/// The answer owed to a request, in request order.
enum Owed {
    /// The mock cluster answers; some answers are mended.
    Upstream(Mend, Asked),
    /// The dev broker answered: this frame.
    Local(Vec<u8>),
}

/// A request passed to the mock cluster: what and when, to log a slow
/// answer.
struct Asked {
    api_key: i16,
    at: Instant,
}

/// What the dev broker changes in an answer of the mock cluster.
enum Mend {
    Nothing,
    /// Adds the APIs the dev broker answers itself.
    ApiVersions,
    /// Names the controller (Metadata of this version).
    Metadata(i16),
}

/// Serves `client` until it disconnects.
pub fn serve(client: TcpStream, upstream: SocketAddr, topics: Arc<Topics>) -> Result<()> {
    let peer = client.peer_addr()?;
    let mock = TcpStream::connect(upstream).context("connecting to the mock cluster")?;
    client.set_nodelay(true)?;
    mock.set_nodelay(true)?;
    let (owed, answers) = unbounded();
    let answering = {
        let (mock, client) = (mock.try_clone()?, client.try_clone()?);
        thread::Builder::new()
            .name(format!("dev-broker-answers-{peer}"))
            .spawn(move || answer(mock, client, answers))?
    };
    let (mut requests, mut to_mock) = (BufReader::new(client.try_clone()?), mock.try_clone()?);
    let served = (|| -> Result<()> {
        while let Some(mut request) = read_frame(&mut requests)? {
            let mut reader = Reader::new(&request);
            let header = RequestHeader::read(&mut reader)?;
            let body = request.len() - reader.rest().len();
            if admin_api::answers(header.api_key) {
                let body =
                    admin_api::answer(&topics, header.api_key, header.api_version, &mut reader)?;
                let mut frame = header.correlation_id.to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                owed.send(Owed::Local(frame))?;
                continue;
            }
            let mend = match header.api_key {
                METADATA => {
                    for topic in mend::auto_created_topics(header.api_version, &mut reader)? {
                        topics.auto_create(&topic);
                    }
                    Mend::Metadata(header.api_version)
                }
                API_VERSIONS => Mend::ApiVersions,
                FETCH => {
                    mend::cap_fetch_wait(header.api_version, &mut request, body)?;
                    Mend::Nothing
                }
                _ => Mend::Nothing,
            };
            let asked = Asked {
                api_key: header.api_key,
                at: Instant::now(),
            };
            owed.send(Owed::Upstream(mend, asked))?;
            write_frame(&mut to_mock, &request)?;
        }
        Ok(())
    })();
    // The answers owed are sent; then both connections close.
    drop(owed);
    let _ = answering.join();
    let _ = mock.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
    served
}

/// Sends the answers owed to the client, in order.
fn answer(mock: TcpStream, client: TcpStream, owed: Receiver<Owed>) {
    let (mut from_mock, mut to_client) = (BufReader::new(mock), client);
    let answered = (|| -> Result<()> {
        for owed in owed {
            let frame = match owed {
                Owed::Local(frame) => frame,
                Owed::Upstream(mend, asked) => {
                    let mut frame =
                        read_frame(&mut from_mock)?.context("the mock cluster closed")?;
                    let waited = asked.at.elapsed();
                    if waited > SLOW_ANSWER {
                        log::debug!("API {} answered after {waited:?}", asked.api_key);
                    }
                    // After the correlation id (a version 0 response header).
                    if let Some(body) = frame.get_mut(4..) {
                        match mend {
                            Mend::Nothing => {}
                            Mend::ApiVersions => {
                                let extended = mend::extend_api_versions(body)?;
                                frame.truncate(4);
                                frame.extend(extended);
                            }
                            Mend::Metadata(version) => mend::name_controller(version, body)?,
                        }
                    }
                    frame
                }
            };
            write_frame(&mut to_client, &frame)?;
        }
        Ok(())
    })();
    if let Err(error) = answered {
        log::debug!("answers ended: {error:#}");
    }
}
