package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.Done;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Two training streams in one consumer group, each with its own trainer and checkpoints, while
 * partitions move between them: every record is trained exactly once over the two trainers.
 */
class RebalanceTest extends PlainBrokerTestBase {
    private static final Duration WAIT = Duration.ofSeconds(30);
    private static final int PARTITIONS = 4;

    private DeadLetters deadLetters;

    /** One member of the group: a stream and its own trainer. */
    private final class Member {
        final String name;
        final RecordingSink sink;
        Consumer.DrainingControl<Done> control;

        Member(String name, RecordingSink sink) {
            this.name = name;
            this.sink = sink;
        }

        void start(String topic, String group, String assignor) {
            // small polls and fast heartbeats: partitions move while records are in flight, and quickly
            Map<String, String> client = Map.of(
                    ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "40",
                    ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "200",
                    ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
            TrainingStream.Settings s = new TrainingStream.Settings(kafka.bootstrapServers(), client, group, Set.of(topic),
                    new RecordDecoder.Config(Set.of("law", "med"), "law", 1 << 16), 31, 2, 4, Duration.ofMillis(200));
            // the checkpoint this trainer holds, possibly from an earlier life in which it owned other partitions
            control = TrainingStream.run(kit.system(), mat, s, new ByteTokenizer(), deadLetters, sink, sink.checkpoint());
        }

        void stop() throws Exception {
            await(control.drainAndShutdown(kit.system().executionContext()), WAIT);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {
            "org.apache.kafka.clients.consumer.RangeAssignor",            // eager: every rebalance revokes everything
            "org.apache.kafka.clients.consumer.CooperativeStickyAssignor" // only the partitions that move are revoked
    })
    void partitionsMovingBetweenTwoTrainersNeitherLoseNorDuplicateARecord(String assignor) throws Exception {
        String tag = assignor.contains("Range") ? "range" : "coop";
        String topic = "rebalance-" + tag;
        String group = topic + "-g";
        kafka.createTopic(topic, PARTITIONS);
        kafka.createTopic(topic + "-dlq", 1);
        deadLetters = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), topic + "-dlq");
        toClose.add(deadLetters);
        // trainers that take a little while per batch and checkpoint every 3rd batch of a domain,
        // so a hand-over finds batches in flight and trained records not yet durable
        Executor slow = CompletableFuture.delayedExecutor(1, TimeUnit.MILLISECONDS);
        Member a = new Member("A", new RecordingSink(3, slow));
        Member b = new Member("B", new RecordingSink(3, slow));
        Random rnd = new Random(tag.hashCode());
        List<String> produced = new ArrayList<>();

        produce(topic, produced, 2_500, rnd);
        a.start(topic, group, assignor);
        awaitThat(() -> a.sink.records() >= 300, "A trains alone");

        // B joins while A still has a backlog: partitions move from A to B
        long flushesBefore = a.sink.flushes();
        b.start(topic, group, assignor);
        produce(topic, produced, 1_500, rnd);
        awaitThat(() -> b.sink.records() >= 200, "B trains after joining");
        assertTrue(a.sink.flushes() > flushesBefore, "A checkpointed when partitions were revoked");

        // A leaves while records are in flight: B takes everything
        produce(topic, produced, 1_500, rnd);
        a.stop();
        produce(topic, produced, 1_000, rnd);
        awaitThat(() -> a.sink.records() + b.sink.records() >= produced.size(), "B trains alone up to the end");

        // A comes back with its old checkpoint, but B has trained past it on every partition
        long aBefore = a.sink.records();
        a.start(topic, group, assignor);
        // produce only once A owns partitions again: else B (several trainers at once since the
        // per-domain stream) may train most of the new records before the rebalance moves any to A
        awaitEveryMemberAssigned(group, 2);
        produce(topic, produced, 1_500, rnd);
        awaitThat(() -> a.sink.records() >= aBefore + 200, "A trains again");

        awaitThat(() -> a.sink.records() + b.sink.records() >= produced.size(), "every record is trained");
        a.stop();
        b.stop();

        List<String> trained = Stream.of(a.sink, b.sink)
                .flatMap(s -> s.texts(true).values().stream()) // complete: no record is split between trainers
                .flatMap(List::stream).map(TrainingStreamTest::idOf).sorted().toList();
        Map<String, Long> twice = trained.stream().collect(Collectors.groupingBy(x -> x, TreeMap::new, Collectors.counting()));
        twice.values().removeIf(n -> n == 1);
        assertEquals(Map.of(), twice, "trained twice");
        assertEquals(produced.stream().map(TrainingStreamTest::idOf).sorted().toList(), trained);
        assertEquals(endOffsets(topic, PARTITIONS), committed(group), "the group committed everything");
        assertEquals(PARTITIONS, b.sink.partitions().size(), "B trained on every partition");
        assertFalse(intersection(a.sink.partitions(), b.sink.partitions()).isEmpty(), "no partition was trained by both");
        org.slf4j.LoggerFactory.getLogger(RebalanceTest.class).info("{}: A trained {} records on {}, B {} on {}; A flushed {} times, B {}",
                tag, a.sink.records(), a.sink.partitions(), b.sink.records(), b.sink.partitions(), a.sink.flushes(), b.sink.flushes());
    }

    /**
     * A trainer's checkpoint can be older than the group's committed position: its partitions moved
     * to another consumer, which trained further. When they come back, the trainer resumes at the
     * committed position, not at its checkpoint (which would train the other's records again).
     */
    @org.junit.jupiter.api.Test
    void aPartitionThatComesBackResumesAtTheCommittedPositionNotAtAnOlderCheckpoint() throws Exception {
        String topic = "come-back";
        String group = topic + "-g";
        kafka.createTopic(topic, PARTITIONS);
        kafka.createTopic(topic + "-dlq", 1);
        deadLetters = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), topic + "-dlq");
        toClose.add(deadLetters);
        String assignor = "org.apache.kafka.clients.consumer.RangeAssignor";
        Member a = new Member("A", new RecordingSink(3));
        Member b = new Member("B", new RecordingSink(3));
        Random rnd = new Random(5);
        List<String> produced = new ArrayList<>();

        produce(topic, produced, 1_000, rnd);
        a.start(topic, group, assignor);
        awaitThat(() -> a.sink.records() >= produced.size(), "A trains everything");
        a.stop();
        Map<String, Map<TopicPartition, dev.morastream.streams.pack.ResumePoint>> aCheckpoint = a.sink.checkpoint();
        Set<TopicPartition> inCheckpoint = new HashSet<>();
        aCheckpoint.values().forEach(points -> inCheckpoint.addAll(points.keySet()));
        assertEquals(PARTITIONS, inCheckpoint.size(), "A's checkpoint covers every partition");

        produce(topic, produced, 1_000, rnd);
        b.start(topic, group, assignor);
        awaitThat(() -> a.sink.records() + b.sink.records() >= produced.size(), "B trains what came after");
        b.stop();

        produce(topic, produced, 500, rnd);
        a.start(topic, group, assignor); // with aCheckpoint: every partition of it is behind the group's position
        awaitThat(() -> a.sink.records() + b.sink.records() >= produced.size(), "A trains what came last");
        a.stop();

        List<String> trained = Stream.of(a.sink, b.sink).flatMap(s -> s.texts(true).values().stream())
                .flatMap(List::stream).map(TrainingStreamTest::idOf).sorted().toList();
        assertEquals(produced.stream().map(TrainingStreamTest::idOf).sorted().toList(), trained);
        assertEquals(endOffsets(topic, PARTITIONS), committed(group), "the group committed everything");
    }

    /**
     * The cause of a rare failure of the test above ("the group committed everything": partition 3
     * committed 1969 of 1974): the offset committed is the minimum over the domains of what each
     * made durable, and a domain's durable offset moved only with its own batches. When the last
     * records of a partition were all of one domain, read after the other domain's last batch, the
     * hand-over committed the other domain's older position. Made deterministic here: a med record,
     * trained alone, then law records only.
     */
    @org.junit.jupiter.api.Test
    void aHandOverCommitsUpToWhereThePartitionWasReadWhenItsLastRecordsAreAllOfOneDomain() throws Exception {
        String topic = "one-domain-tail";
        String group = topic + "-g";
        kafka.createTopic(topic, 1);
        kafka.createTopic(topic + "-dlq", 1);
        deadLetters = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), topic + "-dlq");
        toClose.add(deadLetters);
        Member a = new Member("A", new RecordingSink(1));
        a.start(topic, group, "org.apache.kafka.clients.consumer.RangeAssignor");
        producer.send(new ProducerRecord<>(topic, 0, "med".getBytes(StandardCharsets.UTF_8),
                "[m0] a medicine text".getBytes(StandardCharsets.UTF_8))).get();
        awaitThat(() -> a.sink.records() >= 1, "the med record is trained (its batch cut by the idle flush)");
        for (int i = 0; i < 5; i++) {
            producer.send(new ProducerRecord<>(topic, 0, null, ("[l" + i + "] a law text").getBytes(StandardCharsets.UTF_8))).get();
        }
        awaitThat(() -> a.sink.records() >= 6, "the law records are trained");
        a.stop();
        assertEquals(Map.of("law", List.of("l0", "l1", "l2", "l3", "l4"), "med", List.of("m0")), a.sink.texts(true).entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().stream().map(TrainingStreamTest::idOf).toList())));
        assertEquals(Map.of(new TopicPartition(topic, 0), 6L), committed(group), "committed up to where the partition was read");
    }

    private static Set<TopicPartition> intersection(Set<TopicPartition> x, Set<TopicPartition> y) {
        Set<TopicPartition> s = new HashSet<>(x);
        s.retainAll(y);
        return s;
    }

    private static void produce(String topic, List<String> produced, int n, Random rnd) throws Exception {
        List<CompletableFuture<Void>> sent = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int id = produced.size();
            String text = "[r" + id + "] " + "dolor sit amet ".repeat(rnd.nextInt(4)) + "#" + id;
            produced.add(text);
            byte[] key = rnd.nextInt(3) == 0 ? "med".getBytes(StandardCharsets.UTF_8) : null;
            CompletableFuture<Void> f = new CompletableFuture<>();
            producer.send(new ProducerRecord<>(topic, rnd.nextInt(PARTITIONS), key, text.getBytes(StandardCharsets.UTF_8)),
                    (md, e) -> { if (e != null) f.completeExceptionally(e); else f.complete(null); });
            sent.add(f);
        }
        await(CompletableFuture.allOf(sent.toArray(CompletableFuture[]::new)), WAIT);
    }

    /** Waits until the group is stable with {@code members} members, each owning a partition. */
    private static void awaitEveryMemberAssigned(String group, int members) {
        awaitThat(() -> {
            try {
                var d = kafka.admin().describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
                return "Stable".equalsIgnoreCase(String.valueOf(d.state())) && d.members().size() == members
                        && d.members().stream().noneMatch(m -> m.assignment().topicPartitions().isEmpty());
            } catch (Exception e) {
                return false;
            }
        }, "every member of " + group + " owns partitions");
    }

    /** Polls {@code condition} until it holds or {@link #WAIT} has passed. */
    private static void awaitThat(BooleanSupplier condition, String what) {
        kit.createTestProbe().awaitAssert(WAIT, Duration.ofMillis(20), () -> {
            assertTrue(condition.getAsBoolean(), what);
            return null;
        });
    }
}
