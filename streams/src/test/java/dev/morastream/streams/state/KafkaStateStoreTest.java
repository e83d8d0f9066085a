package dev.morastream.streams.state;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.state.StateRecords.Manifest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link KafkaStateStore} on a real embedded broker: the contract, then what only a shared topic
 * has (other nodes, transactions, fencing, damage, the topic's configuration). 256 KiB chunks, so
 * the contract's 6 MiB value spans 25 records.
 */
class KafkaStateStoreTest extends StateStoreContract {
    static final int CHUNK = 256 * 1024;
    static EmbeddedKafka kafka;
    static final AtomicInteger topics = new AtomicInteger();
    String topic;

    @BeforeAll
    static void startBroker() throws Exception {
        Files.createDirectories(Path.of("target"));
        kafka = EmbeddedKafka.start(Files.createTempDirectory(Path.of("target"), "kafka-state-"));
    }

    @AfterAll
    static void stopBroker() {
        kafka.close();
    }

    @BeforeEach
    void newTopic() {
        topic = "state-" + topics.incrementAndGet();
    }

    static Map<String, Object> client() {
        return Map.of(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
    }

    KafkaStateStore.Settings settings(String writer) {
        return KafkaStateStore.Settings.of(client(), topic).withWriter(writer).withChunkBytes(CHUNK).withTimeout(Duration.ofSeconds(30));
    }

    KafkaStateStore open(String writer) {
        KafkaStateStore s = KafkaStateStore.open(settings(writer));
        track(s);
        return s;
    }

    private final List<StateStore> extra = new ArrayList<>();

    void track(StateStore s) {
        extra.add(s);
    }

    @org.junit.jupiter.api.AfterEach
    void closeExtra() {
        extra.forEach(StateStore::close);
    }

    @Override
    StateStore openStore() {
        return KafkaStateStore.open(settings("contract"));
    }

    KafkaProducer<String, byte[]> rawProducer(String transactionalId) {
        Map<String, Object> p = new HashMap<>(client());
        if (transactionalId != null) {
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        }
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 15_000);
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    /** Sends a value the way a store does (chunks, then the manifest) with a producer of the test's own. */
    void sendLikeAStore(KafkaProducer<String, byte[]> p, String key, String commit, byte[] value) throws Exception {
        List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
        List<byte[]> chunks = StateRecords.split(value, CHUNK);
        for (int i = 0; i < chunks.size(); i++) {
            sent.add(p.send(new ProducerRecord<>(topic, 0, StateRecords.chunkKey(key, commit, i), chunks.get(i))));
        }
        sent.add(p.send(new ProducerRecord<>(topic, 0, StateRecords.manifestKey(key),
                Manifest.of(key, commit, List.of(key), value, CHUNK, "test").encode())));
        p.flush();
        for (var f : sent) {
            f.get(30, TimeUnit.SECONDS); // on the broker (in the transaction, when there is one)
        }
    }

    /** Every record of the topic (read_committed), in order. */
    List<ConsumerRecord<String, byte[]>> readTopic() {
        Map<String, Object> p = new HashMap<>(client());
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        List<ConsumerRecord<String, byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (c.position(tp) < end) {
                assertTrue(System.nanoTime() < deadline, "topic not read within 30 s");
                c.poll(Duration.ofMillis(200)).forEach(out::add);
            }
        }
        return out;
    }

    // ------------------------------------------------------------------ beyond the contract

    @Test
    void aSecondNodeSeesTheFirstsCommits() {
        KafkaStateStore a = open("trainer-a");
        KafkaStateStore b = open(null); // another node, reading only
        a.commit(Map.of("ckpt/adapter", random(700_000, 5), "ckpt/offsets", utf8("{\"0\": 42}")), Set.of());
        b.awaitCaughtUp(Duration.ofSeconds(30));
        assertArrayEquals(random(700_000, 5), b.get("ckpt/adapter").orElseThrow());
        assertEquals("{\"0\": 42}", text(b.get("ckpt/offsets")));
        a.delete("ckpt/offsets");
        b.awaitCaughtUp(Duration.ofSeconds(30));
        assertEquals(List.of("ckpt/adapter"), b.keys("ckpt/"));
        IllegalStateException readOnly = assertThrows(IllegalStateException.class, () -> b.put("x", utf8("y")));
        assertTrue(readOnly.getMessage().contains("only reads"), readOnly.getMessage());
    }

    @Test
    void aReaderNeverSeesACommitInPart() throws Exception {
        KafkaStateStore writer = open("w");
        KafkaStateStore reader = open(null);
        int rounds = 15;
        AtomicBoolean done = new AtomicBoolean();
        CompletableFuture<Integer> checks = CompletableFuture.supplyAsync(() -> {
            int n = 0;
            while (!done.get()) {
                Map<String, byte[]> pair = reader.getAll(List.of("adapter", "optimizer"));
                if (!pair.isEmpty()) {
                    assertEquals(2, pair.size(), "one half of a commit");
                    // each value is 600 KB (3 chunks) whose first bytes say which round wrote it
                    assertEquals(pair.get("adapter")[0], pair.get("optimizer")[0], "adapter and optimizer from different commits");
                    n++;
                }
            }
            return n;
        });
        for (int i = 1; i <= rounds; i++) {
            byte[] adapter = random(600_000, i);
            byte[] optimizer = random(600_000, 1000 + i);
            adapter[0] = (byte) i;
            optimizer[0] = (byte) i;
            writer.commit(Map.of("adapter", adapter, "optimizer", optimizer), Set.of());
        }
        reader.awaitCaughtUp(Duration.ofSeconds(30));
        done.set(true);
        assertTrue(checks.get(60, TimeUnit.SECONDS) > 0, "the reader never saw a pair");
        assertEquals(rounds, reader.get("adapter").orElseThrow()[0]);
    }

    @Test
    void anAbortedOrUnfinishedTransactionIsNeverVisible() throws Exception {
        String txId = settings("crashy").transactionalId();
        open(null); // creates the topic
        try (KafkaProducer<String, byte[]> p = rawProducer(txId)) {
            p.initTransactions();
            p.beginTransaction();
            sendLikeAStore(p, "ghost-aborted", "c1", random(600_000, 7));
            p.flush();
            p.abortTransaction();
        }
        KafkaProducer<String, byte[]> crashing = rawProducer(txId);
        crashing.initTransactions();
        crashing.beginTransaction();
        sendLikeAStore(crashing, "ghost-unfinished", "c2", random(600_000, 8));
        crashing.close(Duration.ZERO); // the writer dies mid-commit
        // its successor (same writer id) aborts the open transaction on opening, then commits
        KafkaStateStore successor = open("crashy");
        successor.put("after", utf8("visible"));
        KafkaStateStore other = open(null);
        assertEquals(List.of("after"), other.keys(""));
        assertTrue(other.get("ghost-aborted").isEmpty());
        assertTrue(other.get("ghost-unfinished").isEmpty());
        assertEquals("visible", text(other.get("after")));
        assertEquals(Map.of(), other.damaged());
        // the ghosts are in the log all right: read_committed is what hides them
        Map<String, Object> p = new HashMap<>(client());
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        Set<String> keys = new java.util.HashSet<>();
        try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            while (c.position(tp) < end) {
                c.poll(Duration.ofMillis(200)).forEach(r -> keys.add(r.key()));
            }
        }
        assertTrue(keys.contains("m/ghost-aborted") && keys.contains("m/ghost-unfinished"), keys.toString());
    }

    @Test
    void aFencedZombieWriterGetsAClearErrorAndWritesNothing() {
        KafkaStateStore zombie = open("medicine");
        zombie.put("ckpt", utf8("one"));
        KafkaStateStore successor = open("medicine"); // the domain's trainer moved to another node
        assertEquals("one", text(successor.get("ckpt")));
        FencedWriterException e = assertThrows(FencedWriterException.class, () -> zombie.put("ckpt", utf8("zombie")));
        assertTrue(e.getMessage().contains("writer medicine is fenced"), e.getMessage());
        assertEquals("medicine", e.writerId());
        assertTrue(zombie.isFenced());
        assertThrows(FencedWriterException.class, () -> zombie.put("other", utf8("zombie")));
        successor.put("ckpt", utf8("two"));
        KafkaStateStore reader = open(null);
        assertEquals("two", text(reader.get("ckpt")));
        assertEquals(List.of("ckpt"), reader.keys(""));
        for (ConsumerRecord<String, byte[]> r : readTopic()) {
            assertFalse(r.value() != null && new String(r.value(), java.nio.charset.StandardCharsets.UTF_8).equals("zombie"),
                    "a zombie's record is visible at " + r.offset());
        }
    }

    @Test
    void replacedAndDeletedChunksAreTombstoned() {
        KafkaStateStore s = open("w");
        s.commit(Map.of("a", random(3 * CHUNK, 1), "b", random(2 * CHUNK + 1, 2)), Set.of());
        s.put("a", random(CHUNK / 2, 3));
        s.delete("b");
        Map<String, byte[]> last = new HashMap<>();
        for (ConsumerRecord<String, byte[]> r : readTopic()) {
            last.put(r.key(), r.value());
        }
        List<String> liveChunks = last.entrySet().stream().filter(e -> e.getKey().startsWith("c/") && e.getValue() != null)
                .map(Map.Entry::getKey).toList();
        assertEquals(1, liveChunks.size(), "live chunks: " + liveChunks);
        assertTrue(liveChunks.get(0).startsWith("c/a/"), liveChunks.toString());
        long tombstones = last.entrySet().stream().filter(e -> e.getKey().startsWith("c/") && e.getValue() == null).count();
        assertEquals(3 + 3, tombstones, "a's 3 first chunks and b's 3");
        Manifest deleted = Manifest.decode("b", last.get("m/b"));
        assertTrue(deleted.deleted());
    }

    @Test
    void aDamagedValueReadsAsAbsentAndIsReported() throws Exception {
        KafkaStateStore s = open("w");
        s.put("fine", utf8("ok"));
        try (KafkaProducer<String, byte[]> p = rawProducer(null)) {
            // a chunk that does not match its manifest's checksum
            p.send(new ProducerRecord<>(topic, 0, StateRecords.chunkKey("bad-sha", "c9", 0), utf8("hello")));
            p.send(new ProducerRecord<>(topic, 0, StateRecords.manifestKey("bad-sha"),
                    new Manifest("bad-sha", "c9", List.of("bad-sha"), false, 1, 5, Digests.sha256Hex(utf8("other")), "test", 0).encode()));
            // a manifest of two chunks with one written
            byte[] two = random(CHUNK + 10, 9);
            p.send(new ProducerRecord<>(topic, 0, StateRecords.chunkKey("half", "c8", 0), StateRecords.split(two, CHUNK).get(0)));
            p.send(new ProducerRecord<>(topic, 0, StateRecords.manifestKey("half"), Manifest.of("half", "c8", List.of("half"), two, CHUNK, "test").encode()));
            // not a manifest at all
            p.send(new ProducerRecord<>(topic, 0, StateRecords.manifestKey("garbage"), utf8("not json")));
            p.flush();
        }
        s.awaitCaughtUp(Duration.ofSeconds(30));
        assertTrue(s.get("bad-sha").isEmpty());
        assertTrue(s.get("half").isEmpty());
        assertTrue(s.get("garbage").isEmpty());
        Map<String, String> damaged = s.damaged();
        assertTrue(damaged.get("bad-sha").contains("SHA-256"), damaged.toString());
        assertTrue(damaged.get("half").contains("chunk 1 of 2"), damaged.toString());
        assertTrue(damaged.get("garbage").contains("not JSON"), damaged.toString());
        assertEquals(List.of("fine"), s.keys(""));
        assertEquals("ok", text(s.get("fine")));
        // written again, a damaged key is whole; a restarted store sees the same
        s.put("bad-sha", utf8("repaired"));
        assertEquals("repaired", text(s.get("bad-sha")));
        assertNull(s.damaged().get("bad-sha"));
        KafkaStateStore again = open(null);
        assertEquals("repaired", text(again.get("bad-sha")));
        assertTrue(again.get("half").isEmpty());
        assertEquals(Set.of("half", "garbage"), again.damaged().keySet());
    }

    @Test
    void theTopicIsCreatedCompactedWithOnePartition() throws Exception {
        open("w");
        var d = kafka.admin().describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
        assertEquals(1, d.partitions().size());
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = kafka.admin().describeConfigs(List.of(r)).all().get(30, TimeUnit.SECONDS).get(r);
        assertEquals("compact", c.get("cleanup.policy").value());
    }

    @Test
    void aTopicThatCannotHoldStateIsRefusedWithWhy() {
        kafka.createTopic(topic, 1); // cleanup.policy=delete, the default
        StateStoreException e = assertThrows(StateStoreException.class, () -> open("w"));
        assertTrue(e.getMessage().contains("cleanup.policy=delete") && e.getMessage().contains("compacted"), e.getMessage());
        topic = topic + "-partitions";
        kafka.createTopic(topic, 3, Map.of("cleanup.policy", "compact"));
        StateStoreException p = assertThrows(StateStoreException.class, () -> open("w"));
        assertTrue(p.getMessage().contains("has 3 partitions"), p.getMessage());
    }
}
