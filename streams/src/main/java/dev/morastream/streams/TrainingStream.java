package dev.morastream.streams;

import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.Packer;
import dev.morastream.streams.pack.ResumePoint;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.DecodeResult;
import dev.morastream.streams.records.DomainRecord;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.Rejected;
import dev.morastream.streams.replay.ReplayMixer;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.kafka.CommitterSettings;
import org.apache.pekko.kafka.ConsumerMessage;
import org.apache.pekko.kafka.ConsumerSettings;
import org.apache.pekko.kafka.Subscriptions;
import org.apache.pekko.kafka.javadsl.Committer;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.apache.pekko.stream.Materializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Kafka topics to packed training batches, with the exactly-once training effect:
 *
 * <pre>
 * committable partitioned source (seeks to the checkpoint's offsets on assignment)
 *   -> decode (mapAsync on morastream.streams.decode-dispatcher)
 *   -> rejected: dead-letter topic, acknowledged before going on
 *   -> tokenize + pack per domain ({@link Packer})
 *   -> optional replay rows appended ({@link ReplayMixer})
 *   -> {@link BatchSink#accept} (mapAsync 1: a slow trainer slows consumption)
 *   -> commit the offsets the trainer reports durable (min over domains) -> Committer.sink
 * </pre>
 *
 * Every buffer is bounded (decode parallelism, one batch at the trainer, the packer's tail per
 * domain, the connector's poll buffer), so memory does not grow with the topic's backlog. The
 * packer's tail is not flushed on stop: its records are read again on the next start (their
 * offsets were never committed nor checkpointed), and the tokens of a record split across batches
 * are skipped by {@link ResumePoint#skipTokens()}.
 */
public final class TrainingStream {
    /** The dispatcher of the decode and pack work, configured in this module's reference.conf. */
    public static final String DECODE_DISPATCHER = "morastream.streams.decode-dispatcher";

    /**
     * @param bootstrapServers Kafka {@code bootstrap.servers}
     * @param clientProperties passed to the consumer unchanged (SASL, TLS…)
     * @param groupId consumer group
     * @param topics topics to read
     * @param decoder what is accepted, and which domains
     * @param seqLen T: tokens predicted per packed row
     * @param batchSize B: rows per batch
     * @param decodeParallelism records decoded at once
     * @param idleFlush when no record arrived for this long, pad and emit every domain's buffered tail
     *     (so a quiet topic still trains on its last records); {@code null} never
     */
    public record Settings(String bootstrapServers, Map<String, String> clientProperties, String groupId,
                           Set<String> topics, RecordDecoder.Config decoder, int seqLen, int batchSize,
                           int decodeParallelism, Duration idleFlush) {
        public Settings {
            clientProperties = Map.copyOf(clientProperties);
            topics = Set.copyOf(topics);
            Objects.requireNonNull(decoder);
            if (decodeParallelism < 1) {
                throw new IllegalArgumentException("decodeParallelism must be positive");
            }
        }
    }

    private static final Logger log = LoggerFactory.getLogger(TrainingStream.class);

    private TrainingStream() {}

    /**
     * Starts the stream.
     *
     * @param checkpoint per domain, the resume points its trainer's checkpoint holds (empty map: none)
     * @return the control: {@code drainAndShutdown} stops reading, lets in-flight batches finish and
     *     their commits land
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
        RecordDecoder decoder = new RecordDecoder(s.decoder());
        Packer packer = new Packer(tokenizer, s.seqLen(), s.batchSize());
        checkpoint.forEach(packer::resumeFrom);
        CommitTracker tracker = new CommitTracker();
        Map<TopicPartition, Long> seek = seekOffsets(s.decoder().domains(), checkpoint);

        ConsumerSettings<byte[], byte[]> consumerSettings =
                ConsumerSettings.create(system, new ByteArrayDeserializer(), new ByteArrayDeserializer())
                        .withBootstrapServers(s.bootstrapServers())
                        .withGroupId(s.groupId())
                        .withProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest")
                        .withProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false")
                        .withProperties(s.clientProperties());
        CommitterSettings committerSettings = CommitterSettings.create(system);
        log.debug("consumer stop-timeout {}, committer max-interval {}", consumerSettings.stopTimeout(), committerSettings.maxInterval());

        return Consumer.committablePartitionedManualOffsetSource(consumerSettings,
                        Subscriptions.topics(s.topics()),
                        assigned -> {
                            Map<TopicPartition, Object> m = new HashMap<>();
                            for (TopicPartition tp : assigned) {
                                Long off = seek.get(tp);
                                if (off != null) {
                                    m.put(tp, off);
                                }
                            }
                            log.info("assigned {}, seeking {}", assigned, m);
                            return CompletableFuture.completedFuture(m);
                        },
                        revoked -> log.info("revoked {}", revoked))
                .flatMapMerge(1024, Pair::second)
                .mapAsync(s.decodeParallelism(), msg -> CompletableFuture.supplyAsync(
                        () -> {
                            Decoded d = new Decoded(decoder.decode(msg.record()), msg.committableOffset());
                            stats.consumed(msg.record().topic());
                            return d;
                        }, decodeExec))
                .mapAsync(s.decodeParallelism(), d -> d.result() instanceof Rejected r
                        ? deadLetters.send(r).thenApplyAsync(x -> {
                            stats.deadLettered(r.topic(), r.reason().code());
                            return d;
                        }, exec)
                        : CompletableFuture.completedFuture(d))
                .keepAlive(s.idleFlush() == null ? Duration.ofDays(365) : s.idleFlush(), () -> Decoded.IDLE)
                .map(d -> {
                    if (d == Decoded.IDLE) {
                        return s.idleFlush() == null ? List.<PackedBatch>of() : packer.flushIdle();
                    }
                    DecodeResult r = d.result();
                    String domain = r instanceof DomainRecord rec ? rec.domain() : null;
                    tracker.record(new TopicPartition(r.topic(), r.partition()), r.offset(), d.offset(), domain);
                    return packer.add(r);
                })
                .mapConcat(batches -> batches)
                .map(b -> replay == null ? b : replay.mix(b))
                .mapAsync(1, (PackedBatch b) -> sink.accept(b).thenApplyAsync(durable -> {
                    stats.batch(b.domain(), b.completedIds().size(), b.batch().predictions());
                    return tracker.durable(b.domain(), durable);
                }, exec))
                .mapConcat(o -> o.map(List::of).orElse(List.of()))
                .map(batch -> {
                    stats.commits.incrementAndGet();
                    return batch;
                })
                .map(batch -> (ConsumerMessage.Committable) batch)
                .toMat(Committer.sink(committerSettings), Consumer::createDrainingControl)
                .run(materializer);
    }

    /** Per partition, the lowest resume offset over the domains, when every domain has one there. */
    static Map<TopicPartition, Long> seekOffsets(Set<String> domains, Map<String, Map<TopicPartition, ResumePoint>> checkpoint) {
        Map<TopicPartition, Long> seek = new HashMap<>();
        Map<TopicPartition, Integer> count = new HashMap<>();
        for (String d : domains) {
            checkpoint.getOrDefault(d, Map.of()).forEach((tp, p) -> {
                seek.merge(tp, p.offset(), Math::min);
                count.merge(tp, 1, Integer::sum);
            });
        }
        // a domain with no resume point there has absorbed nothing there: fall back to the group's committed offset
        seek.keySet().removeIf(tp -> count.get(tp) < domains.size());
        return seek;
    }

    private record Decoded(DecodeResult result, ConsumerMessage.CommittableOffset offset) {
        /** Injected when the topic is quiet: flush the packer. */
        static final Decoded IDLE = new Decoded(null, null);
    }
}
