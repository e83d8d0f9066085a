package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.streams.records.DeadLetterTopic;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.RecordProcessingException;
import dev.morastream.streams.records.RepeatedFailures;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.Done;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.junit.jupiter.api.Test;

/**
 * Poison records against a real embedded broker: the stream never stops for one record, and each
 * poison record has exactly one dead letter, whole or cut to fit, across restarts.
 */
class DeadLettersTest extends PlainBrokerTestBase {
    /** The bound within which records produced after the poison ones must be trained. */
    private static final Duration TRAINED_WITHIN = Duration.ofSeconds(30);
    /** max.message.bytes of the topics here (the broker's default is 1 MiB: the same code path, smaller records). */
    private static final int LIMIT = 100_000;
    private static final String TOKENIZER_BOOM = "TOKENIZER-BOOM";
    private static final String LOOP_BOOM = "POISON-LOOP";

    /** The byte tokenizer, but it throws on texts holding {@link #TOKENIZER_BOOM} (an exception) or {@link #LOOP_BOOM} (an Error). */
    private static final class FaultyTokenizer implements TextTokenizer {
        private final ByteTokenizer bytes = new ByteTokenizer();

        @Override
        public int[] encode(String text) {
            if (text.contains(TOKENIZER_BOOM)) {
                throw new IllegalArgumentException("the tokenizer cannot take this text");
            }
            if (text.contains(LOOP_BOOM)) {
                throw new AssertionError("a tokenizer bug that fails the stream"); // an Error: not caught per record
            }
            return bytes.encode(text);
        }

        @Override
        public String decode(int[] ids) {
            return bytes.decode(ids);
        }

        @Override
        public int vocabSize() {
            return bytes.vocabSize();
        }

        @Override
        public int bos() {
            return bytes.bos();
        }

        @Override
        public Set<Integer> eos() {
            return bytes.eos();
        }

        @Override
        public int pad() {
            return bytes.pad();
        }

        @Override
        public String name() {
            return "faulty-bytes";
        }
    }

    private TrainingStream.Settings settings(String topic, String group, Set<String> domains) {
        return new TrainingStream.Settings(kafka.bootstrapServers(), Map.of(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100"),
                group, Set.of(topic), new RecordDecoder.Config(domains, "law", LIMIT), 31, 2, 4, Duration.ofMillis(200));
    }

    private DeadLetters deadLetters(String dlq, String group) {
        DeadLetters dl = DeadLetters.create(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), dlq, group);
        toClose.add(dl);
        return dl;
    }

    private static long send(KafkaProducer<byte[], byte[]> p, String topic, String key, byte[] value) throws Exception {
        return p.send(new ProducerRecord<>(topic, 0, key == null ? null : key.getBytes(StandardCharsets.UTF_8), value)).get().offset();
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static List<DeadLetterTopic.Letter> letters(String dlq) throws Exception {
        return DeadLetterTopic.read(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()), dlq, Duration.ofSeconds(30));
    }

    private static List<String> trainedIds(RecordingSink sink, String domain) {
        return sink.texts(true).getOrDefault(domain, List.of()).stream().map(TrainingStreamTest::idOf).sorted().toList();
    }

    @Test
    void poisonRecordsAreDeadLetteredOnceCutToFitAndTheStreamGoesOn() throws Exception {
        String topic = "poison";
        String dlq = "poison-dlq";
        String group = "poison-g";
        Map<String, String> limit = Map.of(TopicConfig.MAX_MESSAGE_BYTES_CONFIG, Integer.toString(LIMIT));
        kafka.createTopic(topic, 1, limit);
        kafka.createTopic(dlq, 1, limit);
        DeadLetters deadLetters = deadLetters(dlq, group);
        assertEquals(LIMIT, deadLetters.maxBytes(), "the dead-letter producer is sized from the topic");

        // 1. a gzip record of 3x the limit: its compressed size passes the broker, its value is too large
        byte[] big = utf8("[big] " + "the same words again and again ".repeat(10_000)); // ~300 KB, gzips to ~2 KB
        long bigAt;
        try (KafkaProducer<byte[], byte[]> gzip = new KafkaProducer<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(),
                ProducerConfig.COMPRESSION_TYPE_CONFIG, "gzip",
                ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 * LIMIT), new ByteArraySerializer(), new ByteArraySerializer())) {
            bigAt = send(gzip, topic, null, big);
        }
        // 2. a near-limit record of invalid UTF-8: whole it fits the topic, with the error headers it would not
        byte[] invalid = utf8("[bad] " + "x".repeat(LIMIT - 400));
        invalid[10] = (byte) 0xc3;
        invalid[11] = (byte) 0x28;
        long invalidAt = send(producer, topic, null, invalid);
        // 3. a record the tokenizer throws on
        byte[] boom = utf8("{\"id\": \"boom-1\", \"text\": \"[boom] " + TOKENIZER_BOOM + "\"}");
        long boomAt = send(producer, topic, "law", boom);
        List<String> after = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
            send(producer, topic, null, utf8("[after-" + i + "] trained after the poison records"));
            after.add("after-" + i);
        }

        RecordingSink sink = new RecordingSink(1);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, settings(topic, group, Set.of("law")),
                new FaultyTokenizer(), deadLetters, sink, Map.of());
        await(sink.afterRecords(after.size()), TRAINED_WITHIN);
        assertFalse(control.streamCompletion().toCompletableFuture().isDone(), "the stream stopped");
        assertEquals(after.stream().sorted().toList(), trainedIds(sink, "law"));
        await(control.drainAndShutdown(kit.system().executionContext()), TRAINED_WITHIN);
        assertEquals(3, deadLetters.count());
        assertEquals(2, deadLetters.truncatedCount());

        List<DeadLetterTopic.Letter> letters = letters(dlq);
        assertEquals(3, letters.size(), "one dead letter per poison record");
        Map<Long, DeadLetterTopic.Letter> bySource = letters.stream()
                .collect(Collectors.toMap(DeadLetterTopic.Letter::sourceOffset, l -> l));
        DeadLetterTopic.Letter b = bySource.get(bigAt);
        assertEquals("too-large", b.reason());
        assertEquals("value", b.truncated());
        assertEquals(big.length, b.size());
        assertEquals(Integer.toString(big.length), DeadLetters.header(b.record(), DeadLetters.ORIGINAL_SIZE));
        assertEquals(sha256(big), DeadLetters.header(b.record(), DeadLetters.ORIGINAL_SHA256));
        assertTrue(b.record().value().length < LIMIT && b.record().value().length > LIMIT / 2, "cut to fit, not emptied");
        assertEquals(new String(big, 0, 1000, StandardCharsets.UTF_8), new String(b.record().value(), 0, 1000, StandardCharsets.UTF_8));
        DeadLetterTopic.Letter inv = bySource.get(invalidAt);
        assertEquals("invalid-utf8", inv.reason());
        assertEquals("value", inv.truncated());
        assertEquals(sha256(invalid), DeadLetters.header(inv.record(), DeadLetters.ORIGINAL_SHA256));
        DeadLetterTopic.Letter bm = bySource.get(boomAt);
        assertEquals("processing-error", bm.reason());
        assertNull(bm.truncated());
        assertEquals("boom-1", bm.recordId());
        assertEquals("law", new String(bm.record().key(), StandardCharsets.UTF_8), "the original key");
        assertEquals(IllegalArgumentException.class.getName(), DeadLetters.header(bm.record(), DeadLetters.CONNECT_EXCEPTION_CLASS));
        assertEquals("the tokenizer cannot take this text", DeadLetters.header(bm.record(), DeadLetters.CONNECT_EXCEPTION_MESSAGE));
        for (DeadLetterTopic.Letter l : letters) {
            assertEquals(topic, DeadLetters.header(l.record(), DeadLetters.CONNECT_TOPIC));
            assertEquals("0", DeadLetters.header(l.record(), DeadLetters.CONNECT_PARTITION));
            assertEquals(Long.toString(l.sourceOffset()), DeadLetters.header(l.record(), DeadLetters.CONNECT_OFFSET));
            assertEquals(group, l.group());
            assertNotNull(DeadLetters.header(l.record(), DeadLetters.CONNECT_EXCEPTION_CLASS));
        }
        assertEquals(Map.of(new TopicPartition(topic, 0), 53L), committed(group));

        // a restart that reads the poison records again (a crash before the commit; a new process:
        // a new writer, which finds the letters in the topic's tail) writes no second letter
        kafka.admin().alterConsumerGroupOffsets(group, Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(0))).all().get();
        DeadLetters again = deadLetters(dlq, group);
        RecordingSink sink2 = new RecordingSink(1);
        Consumer.DrainingControl<Done> control2 = TrainingStream.run(kit.system(), mat, settings(topic, group, Set.of("law")),
                new FaultyTokenizer(), again, sink2, Map.of());
        await(sink2.afterRecords(after.size()), TRAINED_WITHIN);
        await(control2.drainAndShutdown(kit.system().executionContext()), TRAINED_WITHIN);
        assertEquals(3, again.duplicatesSkipped());
        assertEquals(0, again.count());
        assertEquals(3, letters(dlq).size(), "no letter written twice");
    }

    @Test
    void aStreamThatFailsThreeTimesAtOneRecordDeadLettersItAndGoesOn() throws Exception {
        String topic = "loop";
        String dlq = "loop-dlq";
        String group = "loop-g";
        kafka.createTopic(topic, 1);
        kafka.createTopic(dlq, 1);
        DeadLetters deadLetters = deadLetters(dlq, group);
        List<String> good = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            send(producer, topic, null, utf8("[before-" + i + "] trained before the poison"));
            good.add("before-" + i);
        }
        long poisonAt = send(producer, topic, null, utf8("[loop] " + LOOP_BOOM));
        for (int i = 0; i < 20; i++) {
            send(producer, topic, null, utf8("[after-" + i + "] trained after the poison"));
            good.add("after-" + i);
        }

        // what the job's restart loop does (MoraJob.startStream): run from the trainer's checkpoint until it fails
        RecordingSink sink = new RecordingSink(1);
        RepeatedFailures failures = deadLetters.failures();
        for (int run = 1; run <= RepeatedFailures.THRESHOLD; run++) {
            Consumer.DrainingControl<Done> c = TrainingStream.run(kit.system(), mat, settings(topic, group, Set.of("law")),
                    new FaultyTokenizer(), deadLetters, sink, sink.checkpoint());
            ExecutionException failed = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                    () -> await(c.streamCompletion(), TRAINED_WITHIN), "run " + run + " fails at the poison record");
            assertTrue(hasCause(failed, RecordProcessingException.class), failed.toString());
            assertEquals(run, failures.failures(topic, 0, poisonAt));
            assertEquals(0, deadLetters.count(), "not dead-lettered before the " + RepeatedFailures.THRESHOLD + "rd failure");
        }
        Consumer.DrainingControl<Done> c = TrainingStream.run(kit.system(), mat, settings(topic, group, Set.of("law")),
                new FaultyTokenizer(), deadLetters, sink, sink.checkpoint());
        await(sink.afterRecords(good.size()), TRAINED_WITHIN); // RecordingSink counts records across the runs
        assertFalse(c.streamCompletion().toCompletableFuture().isDone(), "the stream goes on");
        await(c.drainAndShutdown(kit.system().executionContext()), TRAINED_WITHIN);

        assertEquals(good.stream().sorted().toList(), trainedIds(sink, "law"), "every other record trained exactly once");
        List<DeadLetterTopic.Letter> letters = letters(dlq);
        assertEquals(1, letters.size());
        DeadLetterTopic.Letter l = letters.get(0);
        assertEquals("repeated-failure", l.reason());
        assertEquals(poisonAt, l.sourceOffset());
        assertEquals(AssertionError.class.getName(), DeadLetters.header(l.record(), DeadLetters.CONNECT_EXCEPTION_CLASS));
        assertEquals("[loop] " + LOOP_BOOM, new String(l.record().value(), StandardCharsets.UTF_8));
        assertEquals(Map.of(new TopicPartition(topic, 0), 41L), committed(group));
    }

    @Test
    void replayBringsAnUnknownDomainRecordBackToTrainingOnceTheDomainIsConfigured() throws Exception {
        String topic = "replay-src";
        String dlq = "replay-src-dlq";
        String group = "replay-src-g";
        kafka.createTopic(topic, 2);
        kafka.createTopic(dlq, 1);
        RecordingSink sink = new RecordingSink(2);
        List<String> law = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            producer.send(new ProducerRecord<>(topic, i % 2, null, utf8("[law-" + i + "] a law text"))).get();
            law.add("law-" + i);
        }
        ProducerRecord<byte[], byte[]> med = new ProducerRecord<>(topic, 1, utf8("med"), utf8("[med-1] a medicine text"));
        med.headers().add("origin", utf8("clinic-7"));
        long medAt = producer.send(med).get().offset();

        // only law is configured: the medicine record is dead-lettered
        DeadLetters first = deadLetters(dlq, group);
        Consumer.DrainingControl<Done> c1 = TrainingStream.run(kit.system(), mat, settings(topic, group, Set.of("law")),
                new ByteTokenizer(), first, sink, sink.checkpoint());
        await(sink.afterRecords(law.size()), TRAINED_WITHIN);
        kit.createTestProbe().awaitAssert(TRAINED_WITHIN, () -> {
            assertEquals(1, first.count());
            return null;
        });
        await(c1.drainAndShutdown(kit.system().executionContext()), TRAINED_WITHIN);
        List<DeadLetterTopic.Letter> letters = letters(dlq);
        assertEquals(List.of("unknown-domain"), letters.stream().map(DeadLetterTopic.Letter::reason).toList());

        // the user adds the domain and replays: the record trains once, the original is not read again
        DeadLetterTopic.Replayed r = DeadLetterTopic.replay(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()),
                letters, l -> "unknown-domain".equals(l.reason()), null);
        assertEquals(1, r.replayed());
        assertEquals(Map.of(topic, 1), r.perTopic());
        DeadLetters second = deadLetters(dlq, group);
        Consumer.DrainingControl<Done> c2 = TrainingStream.run(kit.system(), mat, settings(topic, group, Set.of("law", "med")),
                new ByteTokenizer(), second, sink, sink.checkpoint());
        await(sink.afterRecords(law.size() + 1), TRAINED_WITHIN);
        producer.send(new ProducerRecord<>(topic, 0, null, utf8("[law-late] after the replay"))).get();
        law.add("law-late");
        await(sink.afterRecords(law.size() + 1), TRAINED_WITHIN);
        await(c2.drainAndShutdown(kit.system().executionContext()), TRAINED_WITHIN);
        assertEquals(List.of("med-1"), trainedIds(sink, "med"), "the replayed record trained exactly once");
        assertEquals(law.stream().sorted().toList(), trainedIds(sink, "law"));
        assertEquals(0, second.count(), "nothing dead-lettered again");
        assertEquals(endOffsets(topic, 2), committed(group));

        // the replayed record is the original: key, value and headers, without the error headers
        try (var consumer = new org.apache.kafka.clients.consumer.KafkaConsumer<byte[], byte[]>(Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()),
                new org.apache.kafka.common.serialization.ByteArrayDeserializer(), new org.apache.kafka.common.serialization.ByteArrayDeserializer())) {
            List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            List<org.apache.kafka.clients.consumer.ConsumerRecord<byte[], byte[]>> meds = new ArrayList<>();
            long deadline = System.nanoTime() + TRAINED_WITHIN.toNanos();
            while (meds.size() < 2 && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(x -> {
                    if (new String(x.value(), StandardCharsets.UTF_8).startsWith("[med-1]")) {
                        meds.add(x);
                    }
                });
            }
            assertEquals(2, meds.size(), "the original and its replay");
            var replayed = meds.stream().filter(x -> x.partition() != 1 || x.offset() != medAt).findFirst().orElseThrow();
            assertEquals("med", new String(replayed.key(), StandardCharsets.UTF_8));
            assertEquals("clinic-7", DeadLetters.header(replayed, "origin"));
            for (var h : replayed.headers()) {
                assertFalse(DeadLetters.isErrorHeader(h.key()), "error header " + h.key() + " replayed");
            }
        }
    }

    private static boolean hasCause(Throwable t, Class<? extends Throwable> type) {
        for (; t != null; t = t.getCause()) {
            if (type.isInstance(t)) {
                return true;
            }
        }
        return false;
    }

    private static String sha256(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
    }
}
