"""The socket hot path's one exception to "one service call per frame": a per-process writer
that stores the chat.send frames of all local sockets in batches.

    socket A chat.send --\\
    socket B chat.send ----> message_writer --> messages_send_batch (one transaction,
    socket C chat.send --/                            one INSERT, one room.push per room)
                                                       --> each sender's ack, after commit

While one batch is in the database, the next one gathers: under light load a batch is one
message and waits for nothing; under heavy load one commit (a disk flush on PostgreSQL) and
one thread hop serve hundreds of messages. Every promise of message_send holds: the ack comes
after the commit, seqs are gap-free and in order per room, a resend with the same
client_msg_id gets the stored event. Measured in bench/README.md: one transaction and one
thread hop per message capped a process at a few hundred messages a second.
"""

from chatserver.chat.messages import messages_send_batch
from chatserver.core.batching import batcher

message_writer = batcher(messages_send_batch, what="chat messages")
