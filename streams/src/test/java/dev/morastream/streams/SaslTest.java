package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.Rejected;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The stream's and the dead-letter writer's client properties reach Kafka unchanged: against a
 * broker listener that demands SASL/PLAIN, the right credentials read, train, dead-letter and
 * commit; a wrong password fails fast with an authentication error.
 */
class SaslTest extends StreamTestBase {
    private static final Duration WAIT = Duration.ofSeconds(30);
    private static final String LISTENER = "SASL_PLAINTEXT";
    private static final String USER = "trainer";
    private static final String PASSWORD = "trainer-secret";

    private static EmbeddedKafka kafka;

    @BeforeAll
    static void startBroker() throws Exception {
        Files.createDirectories(Path.of("target"));
        kafka = EmbeddedKafka.start(Files.createTempDirectory(Path.of("target"), "kafka-sasl-test-"), Map.of(
                "sasl.enabled.mechanisms", "PLAIN",
                // the broker's side of PLAIN: the users it accepts on this listener
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required user_" + USER + "=\"" + PASSWORD + "\";"),
                Set.of(LISTENER));
        kit = ActorTestKit.create();
    }

    @AfterAll
    static void stopBroker() {
        kit.shutdownTestKit();
        kafka.close();
    }


    private static Map<String, String> sasl(String password) {
        return Map.of(
                CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, LISTENER,
                SaslConfigs.SASL_MECHANISM, "PLAIN",
                SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
                        + USER + "\" password=\"" + password + "\";");
    }

    private DeadLetters deadLetters(String topic, String password) {
        Map<String, Object> props = new HashMap<>(sasl(password));
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(LISTENER));
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) WAIT.toMillis());
        DeadLetters dl = DeadLetters.create(props, topic);
        toClose.add(dl);
        return dl;
    }

    private TrainingStream.Settings settings(String topic, String password) {
        Map<String, String> client = new HashMap<>(sasl(password));
        client.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
        return new TrainingStream.Settings(kafka.bootstrapServers(LISTENER), client, topic + "-g", Set.of(topic),
                RecordDecoder.Config.single("law"), 31, 2, 2, Duration.ofMillis(200));
    }

    @Test
    void withTheRightPasswordRecordsAreTrainedBadOnesDeadLetteredAndOffsetsCommitted() throws Exception {
        String topic = "sasl-texts";
        String dlq = topic + "-dlq";
        kafka.createTopic(topic, 2);
        kafka.createTopic(dlq, 1);
        int good = 0;
        int bad = 0;
        // produced over SASL too: the same properties work for a plain Kafka client
        Map<String, Object> producerProps = new HashMap<>(sasl(PASSWORD));
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(LISTENER));
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < 200; i++) {
                String text = i % 10 == 9 ? "bell\u0007 inside " + i : "[s" + i + "] a text over SASL #" + i;
                if (i % 10 == 9) {
                    bad++;
                } else {
                    good++;
                }
                producer.send(new ProducerRecord<>(topic, i % 2, null, text.getBytes(StandardCharsets.UTF_8))).get();
            }
        }
        RecordingSink sink = new RecordingSink(1);
        DeadLetters deadLetters = deadLetters(dlq, PASSWORD);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, settings(topic, PASSWORD),
                new ByteTokenizer(), deadLetters, sink, Map.of());
        await(sink.afterRecords(good), WAIT);
        int expectedBad = bad;
        kit.createTestProbe().awaitAssert(WAIT, Duration.ofMillis(20), () -> {
            assertEquals(expectedBad, deadLetters.count());
            return null;
        });
        await(control.drainAndShutdown(kit.system().executionContext()), WAIT);

        assertEquals(good, sink.texts(true).get("law").size());
        // the dead letters are in their topic, and the stream's consumer committed over SASL
        long inDlq = kafka.admin().listOffsets(Map.of(new org.apache.kafka.common.TopicPartition(dlq, 0),
                org.apache.kafka.clients.admin.OffsetSpec.latest())).all().get().values().iterator().next().offset();
        assertEquals(bad, inDlq);
        long committed = kafka.admin().listConsumerGroupOffsets(topic + "-g").partitionsToOffsetAndMetadata().get()
                .values().stream().mapToLong(o -> o.offset()).sum();
        assertEquals(good + bad, committed);
    }

    @Test
    void aWrongPasswordFailsTheStreamWithAnAuthenticationError() throws Exception {
        String topic = "sasl-denied";
        kafka.createTopic(topic, 1);
        kafka.createTopic(topic + "-dlq", 1);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, settings(topic, "wrong"),
                new ByteTokenizer(), deadLetters(topic + "-dlq", PASSWORD), new RecordingSink(1), Map.of());
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(control.streamCompletion(), WAIT));
        assertTrue(causes(failed).stream().anyMatch(t -> t instanceof SaslAuthenticationException),
                "not an authentication error: " + causes(failed));
        await(control.shutdown(), WAIT);
    }

    @Test
    void aWrongPasswordFailsADeadLetterWithAnAuthenticationError() throws Exception {
        String dlq = "sasl-denied-dlq";
        kafka.createTopic(dlq, 1);
        DeadLetters deadLetters = deadLetters(dlq, "wrong");
        ConsumerRecord<byte[], byte[]> source = new ConsumerRecord<>("somewhere", 0, 0L, null, new byte[] {7});
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(
                deadLetters.send(new Rejected(Rejected.Reason.EMPTY, "test", source)), WAIT));
        assertTrue(causes(failed).stream().anyMatch(t -> t instanceof SaslAuthenticationException),
                "not an authentication error: " + causes(failed));
        assertEquals(0, deadLetters.count());
    }

    private static List<Throwable> causes(Throwable t) {
        List<Throwable> all = new ArrayList<>();
        for (Throwable c = t; c != null && !all.contains(c); c = c.getCause()) {
            all.add(c);
        }
        return all;
    }
}
