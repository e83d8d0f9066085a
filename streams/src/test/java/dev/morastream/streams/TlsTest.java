package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.streams.kafka.EmbeddedKafka;
import dev.morastream.streams.records.DeadLetters;
import dev.morastream.streams.records.Rejected;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import javax.net.ssl.SSLHandshakeException;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.errors.SslAuthenticationException;
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
class TlsTest extends SecuredClusterTestBase {
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

    @Override
    EmbeddedKafka kafka() {
        return kafka;
    }

    @Override
    String listener() {
        return LISTENER;
    }

    @Test
    void overTlsRecordsAreTrainedBadOnesDeadLetteredAndOffsetsCommitted() throws Exception {
        assertFalse(tls(certs.truststore()).containsKey(SslConfigs.SSL_ENDPOINT_IDENTIFICATION_ALGORITHM_CONFIG));
        mixedTopicIsTrainedDeadLetteredAndCommitted("tls-texts", 100, tls(certs.truststore()));
    }

    @Test
    void aTruststoreWithoutTheCaFailsTheStreamWithAHandshakeError() throws Exception {
        String topic = "tls-untrusted";
        kafka.createTopic(topic, 1);
        kafka.createTopic(topic + "-dlq", 1);
        Consumer.DrainingControl<Done> control = TrainingStream.run(kit.system(), mat,
                settings(topic, tls(certs.strangerTruststore())), new ByteTokenizer(),
                deadLetters(topic + "-dlq", tls(certs.truststore())), new RecordingSink(1), Map.of());
        ExecutionException failed = assertThrows(ExecutionException.class, () -> await(control.streamCompletion(), WAIT));
        assertHandshakeError(failed);
        await(control.shutdown(), WAIT);
    }

    @Test
    void aTruststoreWithoutTheCaFailsADeadLetterWithAHandshakeError() throws Exception {
        String dlq = "tls-untrusted-dlq";
        kafka.createTopic(dlq, 1);
        DeadLetters deadLetters = deadLetters(dlq, tls(certs.strangerTruststore()));
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
