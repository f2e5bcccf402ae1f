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
at a few hundred messages a second. A batch on the embedded database takes about 0.4 ms, so
without the interval batches at 1,500 messages a second held 1.2 messages on average, each
paying for a whole transaction; with 2 ms they hold about 3.
"""

from chatserver.chat.messages import messages_send_batch
from chatserver.core.batching import batcher

BATCH_INTERVAL = 0.002  # seconds: at most 2 ms more before an ack, when busy

message_writer = batcher(messages_send_batch, what="chat messages",
                         min_interval=BATCH_INTERVAL)
