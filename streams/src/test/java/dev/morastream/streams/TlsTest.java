package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.RecordDecoder;
import dev.morastream.streams.records.Rejected;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLHandshakeException;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.errors.SslAuthenticationException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.kafka.javadsl.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS for real: the broker's SSL listener presents a certificate signed by a CA made in the test
 * ({@link TestCertificates}); the stream's and the dead-letter writer's client properties
 * ({@code security.protocol=SSL} and a PKCS12 truststore, hostname verification left on) reach
 * Kafka unchanged, so records produced over TLS are trained, a bad one is dead-lettered and offsets
 * are committed; a client whose truststore does not hold that CA fails at once with an SSL
 * handshake error instead of retrying until a timeout.
 */
class TlsTest extends StreamTestBase {
    private static final Duration WAIT = Duration.ofSeconds(30);
    private static final String LISTENER = "SSL";

    @TempDir
    static Path dir;
    private static TestCertificates certs;
    private static EmbeddedKafka kafka;

    @BeforeAll
    static void startBroker() {
        certs = TestCertificates.generate(dir.resolve("tls"));
        String prefix = "listener.name." + LISTENER.toLowerCase() + ".";
        kafka = EmbeddedKafka.start(dir.resolve("kafka"), Map.of(
                // the broker's side of TLS on its SSL listener: its key and chain (no client certificates asked)
                prefix + SslConfigs.SSL_KEYSTORE_TYPE_CONFIG, "PKCS12",
                prefix + SslConfigs.SSL_KEYSTORE_LOCATION_CONFIG, certs.brokerKeystore().toString(),
                prefix + SslConfigs.SSL_KEYSTORE_PASSWORD_CONFIG, certs.password(),
                prefix + SslConfigs.SSL_KEY_PASSWORD_CONFIG, certs.password()),
                Set.of(LISTENER));
        kit = ActorTestKit.create();
    }

    @AfterAll
    static void stopBroker() {
        if (kit != null) {
            kit.shutdownTestKit();
        }
        if (kafka != null) {
            kafka.close();
        }
    }


    /** What a client of a TLS cluster sets; {@code ssl.endpoint.identification.algorithm} stays at its default (https). */
    private static Map<String, String> tls(Path truststore) {
        return Map.of(
                CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, LISTENER,
                SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PKCS12",
                SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, truststore.toString(),
                SslConfigs.SSL_TRUSTSTORE_PASSWORD_CONFIG, certs.password());
    }

    private DeadLetters deadLetters(String topic, Path truststore) {
        Map<String, Object> props = new HashMap<>(tls(truststore));
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(LISTENER));
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) WAIT.toMillis());
        DeadLetters dl = DeadLetters.create(props, topic);
        toClose.add(dl);
        return dl;
    }

    private TrainingStream.Settings settings(String topic, Path truststore) {
        Map<String, String> client = new HashMap<>(tls(truststore));
        client.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
        return new TrainingStream.Settings(kafka.bootstrapServers(LISTENER), client, topic + "-g", Set.of(topic),
                RecordDecoder.Config.single("law"), 31, 2, 2, Duration.ofMillis(200));
    }

    @Test
    void overTlsRecordsAreTrainedBadOnesDeadLetteredAndOffsetsCommitted() throws Exception {
        assertFalse(tls(certs.truststore()).containsKey(SslConfigs.SSL_ENDPOINT_IDENTIFICATION_ALGORITHM_CONFIG));
        String topic = "tls-texts";
        String dlq = topic + "-dlq";
        kafka.createTopic(topic, 2);
        kafka.createTopic(dlq, 1);
        int good = 0;
        int bad = 0;
        // produced over TLS too: the same properties work for a plain Kafka client
        Map<String, Object> producerProps = new HashMap<>(tls(certs.truststore()));
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(LISTENER));
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < 100; i++) {
                String text = i % 10 == 9 ? "bell\u0007 inside " + i : "[s" + i + "] a text over TLS #" + i;
                if (i % 10 == 9) {
                    bad++;
                } else {
                    good++;
                }
                sent.add(producer.send(new ProducerRecord<>(topic, i % 2, null, text.getBytes(StandardCharsets.UTF_8))));
                if (i == 0) {
                    // the first waits: a broken TLS set-up fails once here, not once per record after a reconnect
                    sent.get(0).get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
                }
            }
            for (Future<RecordMetadata> f : sent) {
                f.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            }
        }
        RecordingSink sink = new RecordingSink(1);
        DeadLetters deadLetters = deadLetters(dlq, certs.truststore());
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat, settings(topic, certs.truststore()),
                new ByteTokenizer(), deadLetters, sink, Map.of());
        await(sink.afterRecords(good), WAIT);
        int expectedBad = bad;
        kit.createTestProbe().awaitAssert(WAIT, Duration.ofMillis(20), () -> {
            assertEquals(expectedBad, deadLetters.count());
            return null;
        });
        await(control.drainAndShutdown(kit.system().executionContext()), WAIT);

        assertEquals(good, sink.texts(true).get("law").size());
        // the dead letters are in their topic (written over TLS), and the stream committed over TLS
        long inDlq = kafka.admin().listOffsets(Map.of(new TopicPartition(dlq, 0), OffsetSpec.latest()))
                .all().get().values().iterator().next().offset();
        assertEquals(bad, inDlq);
        long committed = kafka.admin().listConsumerGroupOffsets(topic + "-g").partitionsToOffsetAndMetadata().get()
                .values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        assertEquals(good + bad, committed);
    }

    @Test
    void aTruststoreWithoutTheCaFailsTheStreamWithAHandshakeError() throws Exception {
        String topic = "tls-untrusted";
        kafka.createTopic(topic, 1);
        kafka.createTopic(topic + "-dlq", 1);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat,
                settings(topic, certs.strangerTruststore()), new ByteTokenizer(),
                deadLetters(topic + "-dlq", certs.truststore()), new RecordingSink(1), Map.of());
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(control.streamCompletion(), WAIT));
        assertHandshakeError(failed);
        await(control.shutdown(), WAIT);
    }

    @Test
    void aTruststoreWithoutTheCaFailsADeadLetterWithAHandshakeError() throws Exception {
        String dlq = "tls-untrusted-dlq";
        kafka.createTopic(dlq, 1);
        DeadLetters deadLetters = deadLetters(dlq, certs.strangerTruststore());
        ConsumerRecord<byte[], byte[]> source = new ConsumerRecord<>("somewhere", 0, 0L, null, new byte[] {7});
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(
                deadLetters.send(new Rejected(Rejected.Reason.EMPTY, "test", source)), WAIT));
        assertHandshakeError(failed);
        assertEquals(0, deadLetters.count());
    }

    /** Kafka's {@link SslAuthenticationException} around the JDK's {@link SSLHandshakeException}. */
    private static void assertHandshakeError(Throwable failed) {
        List<Throwable> causes = causes(failed);
        assertTrue(causes.stream().anyMatch(t -> t instanceof SslAuthenticationException),
                "not an SSL authentication error: " + causes);
        assertTrue(causes.stream().anyMatch(t -> t instanceof SSLHandshakeException),
                "not an SSL handshake error: " + causes);
    }

    private static List<Throwable> causes(Throwable t) {
        List<Throwable> all = new ArrayList<>();
        for (Throwable c = t; c != null && !all.contains(c); c = c.getCause()) {
            all.add(c);
        }
        return all;
    }
}
