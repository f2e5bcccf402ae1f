"""The socket hot path's one exception to "one service call per frame": a per-process writer
that stores the chat.send frames of all local sockets in batches.

    socket A chat.send --\\
    socket B chat.send ----> message_writer --> messages_send_batch (one transaction,
    socket C chat.send --/                            one INSERT, one room.push per room)
                                                       --> each sender's ack, after commit

While one batch is in the database, the next one gathers, and batches start at most every
BATCH_INTERVAL: under light load a batch is one message and waits for nothing; under load one
commit (a disk flush on PostgreSQL) and one thread hop serve many messages. Every promise of
message_send holds: the ack comes after the commit, seqs are gap-free and in order per room, a
resend with the same client_msg_id gets the stored event.

Measured (bench/README.md): one transaction and one thread hop per message capped a process
at a few hundred messages a second. A batch costs about 0.5 ms of CPU before its first
message (the hop, five statements, the commit, its wake-ups of the event loop) and about
50 µs per message, so the interval decides the CPU per message under load. Side by side on
the embedded default, rooms of 10 (bench/ab.py): 4 ms against 2 ms took the server's CPU per
delivery from 39.9 to 27.9 µs at 1,000 messages a second (p50 2.2 -> 3.3 ms, p99 6.1 -> 8.7)
and from 23.9 to 19.9 µs at 3,000; at 100 a second, where sends come more than 4 ms apart,
nothing changed.
"""

from chatserver.chat.messages import messages_send_batch
from chatserver.core.batching import batcher

BATCH_INTERVAL = 0.004  # seconds: at most 4 ms more before an ack, when busy

message_writer = batcher(messages_send_batch, what="chat messages",
                         min_interval=BATCH_INTERVAL)
