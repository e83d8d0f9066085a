package dev.morastream.streams;

import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.Packer;
import dev.morastream.streams.pack.ResumePoint;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordProcessingException;
import dev.morastream.streams.records.RepeatedFailures;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.Rejected;
import dev.morastream.streams.replay.ReplayMixer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.kafka.ConsumerSettings;
import org.apache.pekko.kafka.Subscriptions;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Kafka topics to packed training batches, with the exactly-once training effect:
 *
 * <pre>
 * plain source, subscribed with a rebalance handler ({@link Rebalancer}); records tagged with
 *   the ownership of their partition when fetched ({@link Ownership})
 *   -> chunks of fetched records (up to {@value #CHUNK_RECORDS} records or about 1 MiB: as many as
 *      wait while the decode step is busy, so no latency is added)
 *   -> decode and tokenize a chunk at a time ({@link DecodeStep}, mapAsync on
 *      morastream.streams.decode-dispatcher: one task per chunk); an exception there rejects the
 *      record (processing-error), a record the stream failed on 3 times is rejected unread
 *      (repeated-failure, {@link RepeatedFailures})
 *   -> rejected: dead-letter topic (cut to fit, once per record: {@link DeadLetters}), the chunk's
 *      letters acknowledged before the chunk goes on
 *   -> tokenize + pack per domain ({@link Packer}, in {@link PackingStage}); records of partitions
 *      no longer owned under the ownership they were fetched in are dropped here
 *   -> optional replay rows appended ({@link ReplayMixer})
 *   -> {@link BatchSink#accept} (one batch in flight per domain, domains at once; a slow trainer slows consumption)
 *   -> commit the offsets the trainer reports durable (min over domains; the domains further on
 *      in the commit's metadata), sent by the consumer's own thread for current ownerships only
 * </pre>
 *
 * <h2>The guarantee</h2>
 * Every record is trained exactly once over the union of the trainers of a consumer group (each
 * member with its own trainer and checkpoint), across restarts and across partitions moving between
 * members, provided that (1) every trainer checkpoints what it is asked to: {@link BatchSink#flush}
 * makes everything accepted durable and reports it; (2) a hand-over completes within
 * {@code morastream.streams.rebalance-timeout} (the trainer takes the batches already packed and
 * checkpoints; beyond it the stream fails rather than let a record be trained twice); (3) members
 * stop cleanly ({@code drainAndShutdown}, or {@code shutdown}: both hand their partitions over).
 * What is outside it, and how far:
 * <ul>
 *   <li>a member that crashes (no hand-over) or whose partitions are <em>lost</em> (session timeout):
 *       the next owner trains again what it trained after its last commit, i.e. at most what its
 *       trainer made durable (or trained) after the last commit that reached Kafka. A crashed member
 *       that restarts with the partitions still its own trains nothing twice (it resumes at its
 *       checkpoint, even ahead of the commit);</li>
 *   <li>a trainer without {@link BatchSink#flush} (the default): at a hand-over the next owner
 *       trains again what was trained since its last durable checkpoint (at least once);</li>
 *   <li>a record whose partition moves while a checkpoint restored at start still waits for it
 *       to finish (a record split by that checkpoint): its first tokens were trained before the
 *       restart and the next owner trains it whole (once per domain, per restart);</li>
 *   <li>dead letters are written once per record as far as {@link DeadLetters} remembers (what it wrote,
 *       and the tail of the topic it read at start); a record older than that tail, read again, gets a
 *       second letter.</li>
 * </ul>
 *
 * <h2>Several streams over the same topics</h2>
 * A stream may train a subset of the decoder's domains ({@link Settings#trained}), in a consumer
 * group of its own: a cluster runs one such stream per domain, on the node that holds the domain's
 * lease. Records of the other known domains are passed over like records without tokens (so the
 * group's commits and the domain's resume points move past them), rejected records are sent to the
 * dead-letter topic by exactly one of the streams ({@link Settings#writesDeadLetters}), and the
 * guarantee above holds per group: each domain's records are trained once by its group's trainers.
 *
 * <h2>The mechanism</h2>
 * <b>Start and assignment</b>: for each partition assigned, each domain resumes at the later of its
 * checkpoint's point ({@code checkpoint}) and the group's committed position (the committed offset,
 * or the domain's own offset in the commit's metadata); the consumer seeks to the earliest of these.
 * A checkpoint ahead of the commit is this member's own progress (a crash between checkpoint and
 * commit); a commit ahead of the checkpoint is another member's progress since this one gave the
 * partition up, which a stale checkpoint must not undo.
 *
 * <p><b>Revocation</b> (and stop), inside the consumer's poll, before the group moves the
 * partitions: they stop being this member's (records of theirs still buffered are dropped from then
 * on); the packer finishes the records of theirs that a batch has already split (so no record is
 * divided between two trainers) and drops the rest of theirs (the next owner reads them from the
 * committed offset); the trainer takes every batch packed until then and checkpoints
 * ({@link BatchSink#flush}); and what it made durable is committed synchronously, with the domains
 * that are further on than the committed offset named in the metadata. A domain with nothing of its
 * own left in a partition counts as far on as the partition was read (so the commit reaches the end
 * even when the last records are all of another domain). Commits asked for before a
 * rebalance are sent by the consumer's thread only while their ownership is current, so none lands
 * after a hand-over. Records fetched before an assignment are told apart from those fetched after by
 * the ownership tag, so a partition revoked and assigned back in one rebalance (eager protocol)
 * starts cleanly from the committed offset.
 *
 * <p>Every buffer is bounded (decode parallelism, one batch at the trainer, the packer's tail per
 * domain, the connector's poll buffer), so memory does not grow with the topic's backlog. Whole
 * records in the packer's tail are not trained on stop: they are read again by the next owner (their
 * offsets were never committed nor checkpointed); records already split by a batch are finished
 * first. The tokens of a record split by a checkpoint are skipped on restart by
 * {@link ResumePoint#skipTokens()}.
 */
public final class TrainingStream {
    /** At most this many records go to the decode step as one chunk (it bounds what the stream holds, with the parallelism). */
    static final int CHUNK_RECORDS = 64;
    /** At most about this many value bytes per chunk (a chunk holds at least one record). */
    static final long CHUNK_BYTES = 1 << 20;
    /** The dispatcher of the decode and pack work, configured in this module's reference.conf. */
    public static final String DECODE_DISPATCHER = "morastream.streams.decode-dispatcher";
    /**
     * The config path of the longest a partition hand-over may wait for the trainer (its in-flight
     * batches and a checkpoint); keep it below the consumer's {@code max.poll.interval.ms}.
     */
    public static final String REBALANCE_TIMEOUT = "morastream.streams.rebalance-timeout";

    /**
     * @param bootstrapServers Kafka {@code bootstrap.servers}
     * @param clientProperties passed to the consumer unchanged (SASL, TLS…)
     * @param groupId consumer group
     * @param topics topics to read
     * @param decoder what is accepted, and which domains
     * @param seqLen T: tokens predicted per packed row
     * @param batchSize B: rows per batch
     * @param decodeParallelism chunks of records decoded at once (and chunks whose dead letters are awaited at once)
     * @param idleFlush when no record arrived for this long, pad and emit every domain's buffered tail
     *     (so a quiet topic still trains on its last records); {@code null} never
     * @param trained the domains this stream trains, a non-empty subset of the decoder's: records of
     *     the decoder's other domains are passed over like records without tokens (another stream,
     *     of another consumer group, trains them: one per domain in a cluster), so the commits of
     *     this group move past them
     * @param writesDeadLetters whether this stream sends what it rejects to the dead-letter topic;
     *     of several streams reading the same topics, exactly one should (the others only count)
     */
    public record Settings(String bootstrapServers, Map<String, String> clientProperties, String groupId,
                           Set<String> topics, RecordDecoder.Config decoder, int seqLen, int batchSize,
                           int decodeParallelism, Duration idleFlush, Set<String> trained, boolean writesDeadLetters) {
        public Settings {
            clientProperties = Map.copyOf(clientProperties);
            topics = Set.copyOf(topics);
            Objects.requireNonNull(decoder);
            trained = Set.copyOf(trained);
            if (decodeParallelism < 1) {
                throw new IllegalArgumentException("decodeParallelism must be positive");
            }
            if (trained.isEmpty()) {
                throw new IllegalArgumentException("a training stream trains at least one domain");
            }
            if (!decoder.domains().containsAll(trained)) {
                Set<String> unknown = new java.util.TreeSet<>(trained);
                unknown.removeAll(decoder.domains());
                throw new IllegalArgumentException("trained domains " + unknown + " are not among the decoder's domains " + decoder.domains());
            }
        }

        /** Every domain of the decoder trained, rejections dead-lettered. */
        public Settings(String bootstrapServers, Map<String, String> clientProperties, String groupId, Set<String> topics,
                        RecordDecoder.Config decoder, int seqLen, int batchSize, int decodeParallelism, Duration idleFlush) {
            this(bootstrapServers, clientProperties, groupId, topics, decoder, seqLen, batchSize, decodeParallelism, idleFlush,
                    decoder.domains(), true);
        }
    }

    private static final Logger log = LoggerFactory.getLogger(TrainingStream.class);

    private TrainingStream() {}

    /**
     * Starts the stream.
     *
     * @param checkpoint per domain, the resume points its trainer's checkpoint holds (empty map: none);
     *     used for a partition only where it is further on than the group's committed position
     * @return the control: {@code drainAndShutdown} stops reading, lets in-flight batches finish,
     *     has the trainer checkpoint ({@link BatchSink#flush}) and commits, then leaves the group
     */
    public static Consumer.DrainingControl<Done> run(ActorSystem<?> system, Materializer materializer, Settings s,
                                                     TextTokenizer tokenizer, DeadLetters deadLetters, BatchSink sink,
                                                     Map<String, Map<TopicPartition, ResumePoint>> checkpoint) {
        return run(system, materializer, s, tokenizer, deadLetters, sink, checkpoint, new StreamStats());
    }

    /** As above, counting into {@code stats}. */
    public static Consumer.DrainingControl<Done> run(ActorSystem<?> system, Materializer materializer, Settings s,
                                                     TextTokenizer tokenizer, DeadLetters deadLetters, BatchSink sink,
                                                     Map<String, Map<TopicPartition, ResumePoint>> checkpoint,
                                                     StreamStats stats) {
        return run(system, materializer, s, tokenizer, deadLetters, sink, checkpoint, stats, null);
    }

    /**
     * As above, with replay: {@code replay} (owned by this stream from now on; {@code null}: none)
     * appends rows of earlier batches and of the general corpus to every packed batch before the
     * sink. Replayed rows carry no offsets: the batch's ranges, resume points and completed ids
     * are the packer's, so the exactly-once accounting of new records is unchanged. The reservoir
     * is not checkpointed: after a restart it fills again from new batches.
     */
    public static Consumer.DrainingControl<Done> run(ActorSystem<?> system, Materializer materializer, Settings s,
                                                     TextTokenizer tokenizer, DeadLetters deadLetters, BatchSink sink,
                                                     Map<String, Map<TopicPartition, ResumePoint>> checkpoint,
                                                     StreamStats stats, ReplayMixer replay) {
        Executor decodeExec = system.dispatchers().lookup(DispatcherSelector.fromConfig(DECODE_DISPATCHER));
        Executor exec = system.executionContext();
        Duration handOverTimeout = system.settings().config().getDuration(REBALANCE_TIMEOUT);
        RecordDecoder decoder = new RecordDecoder(s.decoder());
        Ownership ownership = new Ownership();
        CommitTracker tracker = new CommitTracker();
        Packer packer = new Packer(tokenizer, s.seqLen(), s.batchSize());
        PackingStage packing = new PackingStage(packer, s.trained(), ownership, tracker, stats, s.idleFlush());
        RepeatedFailures failures = deadLetters.failures();
        Rebalancer.SerialSink trainer = new Rebalancer.SerialSink(sink);
        Rebalancer rebalancer = new Rebalancer(s.trained(), checkpoint, ownership, packing, tracker, trainer, stats,
                handOverTimeout);

        ConsumerSettings<byte[], byte[]> consumerSettings =
                ConsumerSettings.create(system, new ByteArrayDeserializer(), new ByteArrayDeserializer())
                        .withBootstrapServers(s.bootstrapServers())
                        .withGroupId(s.groupId())
                        .withProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest")
                        .withProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false")
                        .withProperties(s.clientProperties())
                        .withConsumerFactory(cs -> ownership.consumer(cs.getProperties()));
        log.debug("consumer stop-timeout {}, hand-over timeout {}", consumerSettings.stopTimeout(), handOverTimeout);

        Duration tick = s.idleFlush() == null || s.idleFlush().compareTo(PackingStage.TICK) > 0 ? PackingStage.TICK : s.idleFlush();
        DecodeStep decode = new DecodeStep(decoder, tokenizer, packer, failures, stats, true);
        return Consumer.plainSource(consumerSettings, Subscriptions.topics(s.topics()).withPartitionAssignmentHandler(rebalancer))
                // chunks of what the consumer has fetched (as many as wait, up to a bound): one decode task per chunk
                .batchWeighted(CHUNK_BYTES, r -> Math.max(CHUNK_BYTES / CHUNK_RECORDS, (long) r.serializedValueSize()),
                        r -> {
                            List<ConsumerRecord<byte[], byte[]>> chunk = new ArrayList<>(CHUNK_RECORDS);
                            chunk.add(r);
                            return chunk;
                        },
                        (chunk, r) -> {
                            chunk.add(r);
                            return chunk;
                        })
                .mapAsync(s.decodeParallelism(), chunk -> CompletableFuture.supplyAsync(() -> decode.decode(chunk), decodeExec))
                .mapAsync(s.decodeParallelism(), chunk -> s.writesDeadLetters() ? deadLetter(chunk, deadLetters, stats, exec)
                        : CompletableFuture.completedFuture(notLettered(chunk, stats)))
                .map(PackingStage.Element::of)
                .keepAlive(tick, () -> PackingStage.Element.TICK_ELEMENT)
                .concat(Source.single(PackingStage.Element.END_ELEMENT))
                .map(e -> {
                    try {
                        return packing.onElement(e);
                    } catch (RecordProcessingException x) {
                        failures.failed(x); // counted before the stream fails, so before any restart meets the record again
                        throw x;
                    }
                })
                .mapConcat(batches -> batches)
                .map(b -> replay == null ? b : replay.mix(b))
                // one batch in flight per domain, the trainers of different domains at once; results in stream order
                .mapAsyncPartitioned(s.trained().size(), PackedBatch::domain,
                        (PackedBatch b, String domain) -> accepted(b, trainer.accept(b), exec))
                .map(a -> {
                    PackedBatch b = a.batch();
                    stats.batch(b.domain(), b.completedIds().size(), b.batch().predictions());
                    packing.trained();
                    Map<TopicPartition, CommitTracker.Commit> commits = tracker.durable(b.domain(), a.durable());
                    if (!commits.isEmpty()) {
                        ownership.requestCommits(commits);
                        stats.commits.incrementAndGet();
                    }
                    return Done.getInstance();
                })
                .watchTermination((control, done) -> {
                    done.whenComplete((x, e) -> packing.terminated());
                    return control;
                })
                .toMat(Sink.ignore(), Consumer::createDrainingControl)
                .run(materializer);
    }

    /**
     * Sends the chunk's rejected records to the dead-letter topic, all at once; completes with the
     * chunk once every letter is acknowledged (so no offset after them is committed before).
     */
    private static CompletionStage<List<DecodeStep.Decoded>> deadLetter(List<DecodeStep.Decoded> chunk, DeadLetters deadLetters,
                                                                       StreamStats stats, Executor exec) {
        List<CompletableFuture<Rejected>> letters = new ArrayList<>(0);
        for (DecodeStep.Decoded d : chunk) {
            if (d.rejected() != null) {
                letters.add(deadLetters.send(d.rejected()).toCompletableFuture());
            }
        }
        if (letters.isEmpty()) {
            return CompletableFuture.completedFuture(chunk);
        }
        return CompletableFuture.allOf(letters.toArray(CompletableFuture[]::new)).thenApplyAsync(x -> {
            for (CompletableFuture<Rejected> l : letters) {
                Rejected r = l.join();
                stats.deadLettered(r.topic(), r.reason().code());
            }
            return chunk;
        }, exec);
    }

    /** Counts the chunk's rejected records, which another stream of the same topics dead-letters. */
    private static List<DecodeStep.Decoded> notLettered(List<DecodeStep.Decoded> chunk, StreamStats stats) {
        for (DecodeStep.Decoded d : chunk) {
            if (d.rejected() != null) {
                stats.rejectedNotLettered.incrementAndGet();
            }
        }
        return chunk;
    }

    private record Accepted(PackedBatch batch, Map<TopicPartition, Long> durable) {}

    /** The batch with what the trainer answered; at once when it has answered already (no task per batch then). */
    private static CompletionStage<Accepted> accepted(PackedBatch b, CompletableFuture<Map<TopicPartition, Long>> answer, Executor exec) {
        if (answer.isDone() && !answer.isCompletedExceptionally()) {
            return CompletableFuture.completedFuture(new Accepted(b, answer.join()));
        }
        return answer.thenApplyAsync(durable -> new Accepted(b, durable), exec);
    }
}
