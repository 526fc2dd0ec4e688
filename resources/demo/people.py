"""Names, languages and places for demo patients and practitioners.

Nationalities carry names and a spoken language; countries (where the demo organisations are) carry
cities, streets, postal-code and phone patterns. A patient lives in the country of their organisation
but may have any nationality, as in a real catchment area. Phone numbers use reserved or fictional
ranges and e-mail addresses the example.* domains (RFC 2606), so nothing points at a real person.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

# Family names are a plain string, or (male form, female form) where the language inflects them.
Family = str | tuple[str, str]


def _list(text: str) -> tuple[Family, ...]:
    """'Nowak, Kowalski/Kowalska' -> ('Nowak', ('Kowalski', 'Kowalska')); lists stay readable as prose."""
    items: list[Family] = []
    for item in text.split(", "):
        forms = item.split("/")
        items.append((forms[0], forms[1]) if len(forms) == 2 else item)
    return tuple(items)


def _cities(text: str) -> tuple[tuple[str, str, str], ...]:
    """'Boston|MA|021##; Quincy|MA|0216#' -> ((city, state, postal-code pattern), ...)."""
    out = []
    for item in text.split("; "):
        city, state, postal = item.split("|")
        out.append((city, state, postal))
    return tuple(out)


@dataclass(frozen=True)
class Nationality:
    key: str
    language: str  # BCP-47 tag (urn:ietf:bcp:47)
    language_display: str
    male: tuple[str, ...]
    female: tuple[str, ...]
    family: tuple[Family, ...]
    # How many family names a person carries (Spanish: father's and mother's surname).
    double_family: float = 0.0
    # Vietnamese middle names mark gender ("Văn" / "Thị") and come before the given name.
    middle: tuple[str, str] | None = None


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    home: str  # Nationality.key of most residents
    cities: tuple[tuple[str, str, str], ...]  # (city, state/district, postal-code pattern)
    streets: tuple[str, ...]
    line: str  # address line template with {street} and {n}
    phone: str  # '#' any digit, '@' 2-9


NATIONALITIES: dict[str, Nationality] = {
    n.key: n
    for n in (
        Nationality(
            "us",
            "en-US",
            "English (United States)",
            male=_list(
                "James, Michael, Robert, John, David, William, Richard, Joseph, Thomas, "
                "Christopher, Daniel, Matthew, Anthony, Mark, Steven, Andrew, Joshua, Kevin, "
                "Brian, Tyler, Ethan, Noah, Liam, Mason"
            ),
            female=_list(
                "Mary, Patricia, Jennifer, Linda, Elizabeth, Barbara, Susan, Jessica, Sarah, "
                "Karen, Emily, Ashley, Olivia, Emma, Madison, Hannah, Abigail, Megan, Rachel, "
                "Lauren, Ava, Chloe, Grace, Harper"
            ),
            family=_list(
                "Smith, Johnson, Williams, Brown, Jones, Miller, Davis, Wilson, Anderson, Taylor, "
                "Thomas, Moore, Jackson, Martin, Lee, Thompson, White, Harris, Clark, Lewis, "
                "Robinson, Walker, Young, Allen, King, O'Brien, Sullivan, McCarthy, Fitzgerald, "
                "Washington"
            ),
        ),
        Nationality(
            "de",
            "de",
            "German",
            male=_list(
                "Lukas, Jonas, Leon, Felix, Maximilian, Paul, Jürgen, Klaus, Stefan, Thomas, "
                "Wolfgang, Günter, Dieter, Matthias, Andreas, Jörg, Uwe, Tobias, Niklas, Florian, "
                "Björn, Horst"
            ),
            female=_list(
                "Anna, Lena, Sophie, Marie, Hannah, Laura, Ursula, Brigitte, Sabine, Petra, "
                "Monika, Renate, Jutta, Käthe, Bärbel, Heike, Katrin, Lea, Charlotte, Greta, "
                "Dörte, Ilse"
            ),
            family=_list(
                "Müller, Schmidt, Schneider, Fischer, Weber, Meyer, Wagner, Becker, Schulz, "
                "Hoffmann, Schäfer, Koch, Bauer, Richter, Klein, Wolf, Schröder, Neumann, Schwarz, "
                "Zimmermann, Braun, Krüger, Hofmann, Hartmann, Lange, Weiß, Köhler, Groß, Jäger, "
                "Vogt"
            ),
        ),
        Nationality(
            "fr",
            "fr",
            "French",
            male=_list(
                "Jean, Pierre, Michel, André, Philippe, René, Louis, Lucas, Hugo, Théo, Mathéo, "
                "Gabriel, Raphaël, Jérôme, François, Étienne, Noël, Benoît, Cédric, Sébastien, "
                "Grégoire, Anaël"
            ),
            female=_list(
                "Marie, Jeanne, Françoise, Monique, Catherine, Nathalie, Isabelle, Sylvie, Chloé, "
                "Léa, Manon, Camille, Inès, Zoé, Élodie, Hélène, Céline, Anaïs, Mélanie, Noémie, "
                "Amélie, Gaëlle"
            ),
            family=_list(
                "Martin, Bernard, Dubois, Thomas, Robert, Richard, Petit, Durand, Leroy, Moreau, "
                "Simon, Laurent, Lefèvre, Michel, Fournier, Girard, Bonnet, Dupont, Lambert, "
                "Fontaine, Rousseau, Vincent, Mercier, Chevalier, Gauthier, Faure, Barbier, Brun, "
                "Lemaître, Bénard"
            ),
        ),
        Nationality(
            "br",
            "pt-BR",
            "Portuguese (Brazil)",
            male=_list(
                "João, José, Antônio, Francisco, Carlos, Paulo, Pedro, Lucas, Luiz, Marcos, "
                "Gabriel, Rafael, Thiago, Gustavo, Felipe, Bruno, Matheus, Vinícius, Sérgio, Caio, "
                "Otávio, Fábio"
            ),
            female=_list(
                "Maria, Ana, Francisca, Antônia, Adriana, Juliana, Márcia, Fernanda, Patrícia, "
                "Aline, Beatriz, Letícia, Camila, Larissa, Vitória, Luíza, Gabriela, Júlia, "
                "Débora, Cecília, Lívia, Mônica"
            ),
            family=_list(
                "Silva, Santos, Oliveira, Souza, Rodrigues, Ferreira, Alves, Pereira, Lima, Gomes, "
                "Costa, Ribeiro, Martins, Carvalho, Almeida, Lopes, Soares, Fernandes, Vieira, "
                "Barbosa, Araújo, Conceição, Gonçalves, Magalhães, Assunção, Brandão"
            ),
            double_family=0.5,
        ),
        Nationality(
            "es",
            "es",
            "Spanish",
            male=_list(
                "José, Antonio, Manuel, Francisco, Juan, David, Javier, Daniel, Carlos, Jesús, "
                "Alejandro, Miguel, Rafael, Pablo, Sergio, Álvaro, Andrés, Ramón, Joaquín, Martín, "
                "Íñigo, Hugo"
            ),
            female=_list(
                "María, Carmen, Ana, Isabel, Dolores, Pilar, Teresa, Rosa, Lucía, Paula, Laura, "
                "Marta, Cristina, Sofía, Martina, Inés, Begoña, Mónica, Ángela, Raquel, Nuria, "
                "Verónica"
            ),
            family=_list(
                "García, Rodríguez, González, Fernández, López, Martínez, Sánchez, Pérez, Gómez, "
                "Martín, Jiménez, Ruiz, Hernández, Díaz, Moreno, Muñoz, Álvarez, Romero, Alonso, "
                "Gutiérrez, Navarro, Torres, Domínguez, Vázquez, Ramos, Gil, Ramírez, Serrano, "
                "Blanco, Suárez, Ibáñez, Peña"
            ),
            double_family=1.0,
        ),
        Nationality(
            "it",
            "it",
            "Italian",
            male=_list(
                "Giuseppe, Giovanni, Antonio, Mario, Luigi, Francesco, Angelo, Vincenzo, Pietro, "
                "Salvatore, Carlo, Franco, Domenico, Bruno, Paolo, Niccolò, Lorenzo, Matteo, "
                "Alessandro, Leonardo"
            ),
            female=_list(
                "Maria, Anna, Giuseppina, Rosa, Angela, Giovanna, Teresa, Lucia, Carmela, "
                "Caterina, Francesca, Chiara, Giulia, Sofia, Aurora, Alice, Ginevra, Beatrice, "
                "Elena, Martina"
            ),
            family=_list(
                "Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco, "
                "Bruno, Gallo, Conti, De Luca, Mancini, Costa, Giordano, Rizzo, Lombardi, Moretti, "
                "Barbieri, Fontana, Santoro, Mariani, Rinaldi, Caruso, D'Angelo, Galli, Martini, "
                "Leone"
            ),
        ),
        Nationality(
            "pl",
            "pl",
            "Polish",
            male=_list(
                "Piotr, Krzysztof, Andrzej, Tomasz, Paweł, Michał, Marcin, Jakub, Łukasz, Mateusz, "
                "Stanisław, Wojciech, Józef, Grzegorz, Kamil, Bartłomiej, Szymon, Zbigniew, Jerzy, "
                "Dawid"
            ),
            female=_list(
                "Anna, Maria, Katarzyna, Małgorzata, Agnieszka, Barbara, Ewa, Krystyna, Elżbieta, "
                "Zofia, Magdalena, Joanna, Aleksandra, Monika, Jadwiga, Dorota, Grażyna, Wiktoria, "
                "Zuzanna, Halina"
            ),
            family=_list(
                "Nowak, Kowalski/Kowalska, Wiśniewski/Wiśniewska, Wójcik, Kowalczyk, "
                "Kamiński/Kamińska, Lewandowski/Lewandowska, Zieliński/Zielińska, "
                "Szymański/Szymańska, Woźniak, Dąbrowski/Dąbrowska, Kozłowski/Kozłowska, "
                "Jankowski/Jankowska, Mazur, Krawczyk, Piotrowski/Piotrowska, Grabowski/Grabowska, "
                "Pawłowski/Pawłowska, Michalski/Michalska, Zając"
            ),
        ),
        Nationality(
            "se",
            "sv",
            "Swedish",
            male=_list(
                "Lars, Anders, Johan, Per, Erik, Karl, Nils, Björn, Gustav, Oskar, Axel, Lennart, "
                "Håkan, Göran, Sven, Åke, Mats, Olof, Magnus, Emil"
            ),
            female=_list(
                "Anna, Eva, Maria, Karin, Kristina, Lena, Ingrid, Birgitta, Elsa, Astrid, Maja, "
                "Ebba, Linnéa, Märta, Åsa, Signe, Saga, Ylva, Britt, Sofia"
            ),
            family=_list(
                "Andersson, Johansson, Karlsson, Nilsson, Eriksson, Larsson, Olsson, Persson, "
                "Svensson, Gustafsson, Pettersson, Jonsson, Jansson, Hansson, Bengtsson, Jönsson, "
                "Lindberg, Lindström, Lindqvist, Björk, Sjöberg, Åberg, Öberg, Lundgren, Berglund"
            ),
        ),
        Nationality(
            "tr",
            "tr",
            "Turkish",
            male=_list(
                "Mehmet, Mustafa, Ahmet, Ali, Hüseyin, Hasan, İbrahim, İsmail, Osman, Yusuf, "
                "Murat, Ömer, Emre, Burak, Çağlar, Kemal, Selim, Tuncay, Oğuz, Eren"
            ),
            female=_list(
                "Fatma, Ayşe, Emine, Hatice, Zeynep, Elif, Meryem, Şerife, Zehra, Sultan, Hülya, "
                "Özlem, Gül, Büşra, Esra, Ebru, Derya, Yağmur, Nur, Sevgi"
            ),
            family=_list(
                "Yılmaz, Kaya, Demir, Şahin, Çelik, Yıldız, Yıldırım, Öztürk, Aydın, Özdemir, "
                "Arslan, Doğan, Kılıç, Aslan, Çetin, Kara, Koç, Kurt, Özkan, Şimşek, Polat, "
                "Erdoğan, Güneş, Aksoy, Korkmaz"
            ),
        ),
        Nationality(
            "vn",
            "vi",
            "Vietnamese",
            male=_list(
                "An, Bảo, Cường, Dũng, Đức, Hải, Hiếu, Hoàng, Hùng, Huy, Khang, Khoa, Long, Minh, "
                "Nam, Phúc, Quang, Sơn, Thắng, Tuấn"
            ),
            female=_list(
                "Anh, Chi, Dung, Giang, Hà, Hạnh, Hằng, Hoa, Hương, Lan, Linh, Mai, Ngọc, Nhung, "
                "Phương, Quỳnh, Thảo, Thu, Trang, Vy"
            ),
            family=_list(
                "Nguyễn, Trần, Lê, Phạm, Hoàng, Huỳnh, Phan, Vũ, Võ, Đặng, Bùi, Đỗ, Hồ, Ngô, Dương, Lý"
            ),
            middle=("Văn", "Thị"),
        ),
        Nationality(
            "in",
            "hi",
            "Hindi",
            male=_list(
                "Aarav, Arjun, Vihaan, Rahul, Amit, Rajesh, Sanjay, Vikram, Anil, Suresh, Ravi, "
                "Deepak, Karthik, Rohan, Aditya, Manoj, Prakash, Sunil, Ashok, Kiran"
            ),
            female=_list(
                "Priya, Ananya, Aadhya, Diya, Saanvi, Sunita, Anjali, Kavita, Pooja, Neha, "
                "Lakshmi, Meera, Deepika, Divya, Shreya, Rekha, Geeta, Sarita, Isha, Nisha"
            ),
            family=_list(
                "Sharma, Verma, Gupta, Singh, Kumar, Patel, Reddy, Iyer, Nair, Rao, Joshi, Mehta, "
                "Desai, Chatterjee, Banerjee, Mukherjee, Pillai, Menon, Agarwal, Khan, Das, Bose, "
                "Kapoor, Malhotra, Chopra"
            ),
        ),
        Nationality(
            "ng",
            "en-NG",
            "English (Nigeria)",
            male=_list(
                "Chinedu, Oluwaseun, Emeka, Adebayo, Tunde, Ibrahim, Musa, Chukwuemeka, Obinna, "
                "Segun, Kayode, Femi, Uche, Babatunde, Yusuf, Ikechukwu, Olumide, Nnamdi, "
                "Abubakar, Tobi"
            ),
            female=_list(
                "Ngozi, Chiamaka, Funmilayo, Aisha, Adaeze, Folake, Yetunde, Amaka, Bisola, "
                "Zainab, Nkechi, Temitope, Ifeoma, Oluwakemi, Halima, Chioma, Blessing, Precious, "
                "Adunni, Fatima"
            ),
            family=_list(
                "Okafor, Adeyemi, Okonkwo, Ogunleye, Eze, Bello, Abubakar, Adebayo, Nwosu, "
                "Olawale, Balogun, Chukwu, Ibrahim, Okeke, Afolabi, Obi, Ogundipe, Nwachukwu, "
                "Adeleke, Mohammed, Usman, Adewale, Ojo"
            ),
        ),
        Nationality(
            "jp",
            "ja",
            "Japanese",
            male=_list(
                "Hiroshi, Takashi, Kenji, Satoshi, Kazuki, Haruto, Ren, Sōta, Yūki, Daiki, Takumi, "
                "Shō, Kenta, Ryō, Makoto, Akira, Tarō, Jun, Yūto, Minato"
            ),
            female=_list(
                "Yōko, Keiko, Yūko, Akiko, Tomoko, Sakura, Yui, Hina, Aoi, Mei, Haruka, Misaki, "
                "Yūna, Emi, Naomi, Kaori, Ayaka, Rin, Mio, Hanako"
            ),
            family=_list(
                "Satō, Suzuki, Takahashi, Tanaka, Watanabe, Itō, Yamamoto, Nakamura, Kobayashi, "
                "Katō, Yoshida, Yamada, Sasaki, Yamaguchi, Matsumoto, Inoue, Kimura, Hayashi, "
                "Shimizu, Saitō"
            ),
        ),
    )
}


COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        Country(
            "US",
            home="us",
            cities=_cities(
                "Boston|MA|021##; Cambridge|MA|0213#; Somerville|MA|0214#; Quincy|MA|0216#; "
                "Newton|MA|024##; Brookline|MA|0244#; Medford|MA|0215#; Waltham|MA|0245#; "
                "Malden|MA|0214#; Lowell|MA|018##; Worcester|MA|016##; Salem|MA|0197#"
            ),
            streets=_list(
                "Main Street, Oak Avenue, Maple Street, Cedar Lane, Elm Street, Washington Avenue, "
                "Park Road, Lake Drive, Pine Street, Highland Avenue, Beacon Street, "
                "Harbor View Terrace, Chestnut Hill Road, Summer Street"
            ),
            line="{n} {street}",
            phone="+1 @## 555 01##",
        ),
        Country(
            "DE",
            home="de",
            cities=_cities(
                "Leipzig|Sachsen|04###; Markkleeberg|Sachsen|0441#; Taucha|Sachsen|0442#; "
                "Schkeuditz|Sachsen|0443#; Markranstädt|Sachsen|0442#; Delitzsch|Sachsen|0450#; "
                "Grimma|Sachsen|0466#; Borna|Sachsen|0455#; Wurzen|Sachsen|0480#; "
                "Halle (Saale)|Sachsen-Anhalt|061##; Dresden|Sachsen|01###; Görlitz|Sachsen|0282#"
            ),
            streets=_list(
                "Hauptstraße, Bahnhofstraße, Schulstraße, Gartenstraße, Lindenstraße, "
                "Goethestraße, Schillerstraße, Kirchweg, Mühlenweg, Am Markt, "
                "Karl-Liebknecht-Straße, Straße des 17. Juni, Fröbelstraße, Talstraße"
            ),
            line="{street} {n}",
            phone="+49 15@ ########",
        ),
        Country(
            "FR",
            home="fr",
            cities=_cities(
                "Lyon|Auvergne-Rhône-Alpes|6900#; Villeurbanne|Auvergne-Rhône-Alpes|69100; "
                "Vénissieux|Auvergne-Rhône-Alpes|69200; "
                "Caluire-et-Cuire|Auvergne-Rhône-Alpes|69300; Bron|Auvergne-Rhône-Alpes|69500; "
                "Vaulx-en-Velin|Auvergne-Rhône-Alpes|69120; "
                "Saint-Priest|Auvergne-Rhône-Alpes|69800; Écully|Auvergne-Rhône-Alpes|69130; "
                "Oullins|Auvergne-Rhône-Alpes|69600; Décines-Charpieu|Auvergne-Rhône-Alpes|69150; "
                "Villefranche-sur-Saône|Auvergne-Rhône-Alpes|69400; "
                "Saint-Étienne|Auvergne-Rhône-Alpes|420##"
            ),
            streets=_list(
                "rue de la République, avenue Victor Hugo, boulevard des Belges, rue des Écoles, "
                "place de la Mairie, rue du Général-de-Gaulle, chemin des Églantiers, rue Pasteur, "
                "quai Saint-Vincent, rue de l'Église, allée des Tilleuls, cours Émile-Zola"
            ),
            line="{n} {street}",
            phone="+33 6 ## ## ## ##",
        ),
        Country(
            "BR",
            home="br",
            cities=_cities(
                "São Paulo|SP|0####-###; Guarulhos|SP|07###-###; Osasco|SP|06###-###; "
                "Santo André|SP|09###-###; São Bernardo do Campo|SP|09###-###; "
                "Diadema|SP|099##-###; Mauá|SP|093##-###; Carapicuíba|SP|063##-###; "
                "Taboão da Serra|SP|067##-###; Barueri|SP|064##-###; Jundiaí|SP|13###-###; "
                "Campinas|SP|13###-###"
            ),
            streets=_list(
                "Rua das Flores, Avenida Paulista, Rua Sete de Setembro, Rua XV de Novembro, "
                "Avenida Brasil, Rua São João, Rua Augusta, Alameda Santos, Rua da Consolação, "
                "Avenida Ipiranga, Travessa do Comércio, Rua Tiradentes"
            ),
            line="{street}, {n}",
            phone="+55 11 9####-####",
        ),
    )
}

EMAIL_DOMAINS = ("example.org", "example.com", "example.net")

# Letters that NFKD does not decompose into an ASCII base letter.
_ASCII_FOLD = str.maketrans(
    {"ß": "ss", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ı": "i", "ø": "o", "æ": "ae"}
)


def fill(pattern: str, rng: random.Random) -> str:
    """Replace '#' with any digit and '@' with 2-9 (area codes and mobile prefixes do not start 0/1)."""
    out = []
    for ch in pattern:
        if ch == "#":
            out.append(str(rng.randrange(10)))
        elif ch == "@":
            out.append(str(rng.randrange(2, 10)))
        else:
            out.append(ch)
    return "".join(out)


def ascii_slug(text: str) -> str:
    """'Müller-Lüdenscheidt' -> 'muller-ludenscheidt' for e-mail local parts."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    plain = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return "".join(ch for ch in plain if ch.isalnum() or ch in ".-")


@dataclass(frozen=True)
class PersonName:
    family: str
    given: tuple[str, ...]
    called: str  # the given name people use (not a Vietnamese gender marker), for e-mail addresses


def pick_name(rng: random.Random, nationality: Nationality, gender: str) -> PersonName:
    female = gender == "female"
    given_pool = nationality.female if female else nationality.male

    def one_family() -> str:
        family = rng.choice(nationality.family)
        if isinstance(family, tuple):
            return family[1] if female else family[0]
        return family

    family = one_family()
    if nationality.double_family and rng.random() < nationality.double_family:
        second = one_family()
        if second != family:
            family = f"{family} {second}"
    called = rng.choice(given_pool)
    given = [called]
    if nationality.middle is not None:
        given.insert(0, nationality.middle[1] if female else nationality.middle[0])
    elif rng.random() < 0.3:
        second = rng.choice(given_pool)
        if second != given[0]:
            given.append(second)
    return PersonName(family, tuple(given), called)


def pick_nationality(rng: random.Random, country: Country) -> Nationality:
    # Two thirds of a catchment area share the country's nationality; the rest come from anywhere.
    if rng.random() < 0.66:
        return NATIONALITIES[country.home]
    return NATIONALITIES[rng.choice(sorted(NATIONALITIES))]
