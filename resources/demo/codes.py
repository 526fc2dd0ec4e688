"""Clinical terminology for the demo data: code systems, LOINC observations, SNOMED CT conditions and
care plans, RxNorm medications, and the HL7 terminology codes the resources need.

Codes are the ones Synthea and the US Core examples use, with their official display strings.
Tables are plain tuples so the builder's choices (and therefore its output) depend only on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
BCP47 = "urn:ietf:bcp:47"
THO = "http://terminology.hl7.org/CodeSystem/"
OBSERVATION_CATEGORY = THO + "observation-category"
INTERPRETATION = THO + "v3-ObservationInterpretation"
CONDITION_CLINICAL = THO + "condition-clinical"
CONDITION_VERIFICATION = THO + "condition-ver-status"
CONDITION_CATEGORY = THO + "condition-category"
ACT_CODE = THO + "v3-ActCode"
PARTICIPATION_TYPE = THO + "v3-ParticipationType"
MARITAL_STATUS = THO + "v3-MaritalStatus"
IDENTIFIER_TYPE = THO + "v2-0203"
ORGANIZATION_TYPE = THO + "organization-type"
PRACTITIONER_ROLE = THO + "practitioner-role"
DEGREE = THO + "v2-0360"
DOSE_RATE_TYPE = THO + "dose-rate-type"
CARE_TEAM_CATEGORY = LOINC  # LOINC answer list LL3925-6 (care team category)

MRN_SYSTEM = "http://example.org/fhir/mrn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
STAFF_SYSTEM = "http://example.org/fhir/staff-id"
ORG_SYSTEM = "http://example.org/fhir/organization-id"


@dataclass(frozen=True)
class Measure:
    """A quantitative observation: LOINC code, UCUM unit, normal range and rounding."""

    code: str
    display: str
    unit: str  # UCUM code, also used as the human unit
    places: int  # decimals the value is rounded to
    low: float | None = None  # reference range, None where no range is reported
    high: float | None = None


# --- vital signs (category vital-signs, http://hl7.org/fhir/R4/observation-vitalsigns.html) ---------
HEART_RATE = Measure("8867-4", "Heart rate", "/min", 0)
RESPIRATORY_RATE = Measure("9279-1", "Respiratory rate", "/min", 0)
BODY_TEMPERATURE = Measure("8310-5", "Body temperature", "Cel", 1)
BODY_HEIGHT = Measure("8302-2", "Body height", "cm", 1)
BODY_WEIGHT = Measure("29463-7", "Body weight", "kg", 1)
BMI = Measure("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 1)
HEAD_CIRCUMFERENCE = Measure("9843-4", "Head Occipital-frontal circumference", "cm", 1)
OXYGEN_SATURATION = Measure("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 0)
PAIN_SCORE = Measure("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}", 0)
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = Measure("8480-6", "Systolic blood pressure", "mm[Hg]", 0)
DIASTOLIC = Measure("8462-4", "Diastolic blood pressure", "mm[Hg]", 0)

# --- laboratory (category laboratory); ranges are typical adult reference intervals ---------------
GLUCOSE = Measure("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 0, 70, 99)
HBA1C = Measure("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 1, 4.0, 5.6)
CHOLESTEROL = Measure("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 0, None, 200)
TRIGLYCERIDES = Measure("2571-8", "Triglycerides [Mass/volume] in Serum or Plasma", "mg/dL", 0, None, 150)
HDL = Measure("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 0, 40, None)
LDL = Measure(
    "18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", 0, None, 130
)
HEMOGLOBIN = Measure("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 1, 12.0, 17.5)
HEMATOCRIT = Measure("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 1, 36, 50)
LEUKOCYTES = Measure("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 1, 4.5, 11.0)
PLATELETS = Measure("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 0, 150, 400)
ERYTHROCYTES = Measure("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 2, 4.2, 5.9)
CREATININE = Measure("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 2, 0.6, 1.3)
UREA_NITROGEN = Measure("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 0, 7, 20)
SODIUM = Measure("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 0, 136, 145)
POTASSIUM = Measure("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 1, 3.5, 5.1)
CHLORIDE = Measure("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 0, 98, 107)
CARBON_DIOXIDE = Measure(
    "2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 0, 22, 29
)
CALCIUM = Measure("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 1, 8.6, 10.3)

METABOLIC_PANEL = (GLUCOSE, UREA_NITROGEN, CREATININE, SODIUM, POTASSIUM, CHLORIDE, CARBON_DIOXIDE, CALCIUM)
BLOOD_COUNT = (HEMOGLOBIN, HEMATOCRIT, LEUKOCYTES, ERYTHROCYTES, PLATELETS)
LIPID_PANEL = (CHOLESTEROL, TRIGLYCERIDES, HDL, LDL)

SMOKING_STATUS = ("72166-2", "Tobacco smoking status")
SMOKING_ANSWERS = (
    ("266919005", "Never smoker", 0.6),
    ("8517006", "Ex-smoker", 0.25),
    ("449868002", "Smokes tobacco daily", 0.15),
)

INTERPRETATIONS = {"L": "Low", "N": "Normal", "H": "High"}


# --- encounters -------------------------------------------------------------------------------------
ENCOUNTER_CLASSES = {"AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient encounter"}
CHECK_UP = ("185349003", "Encounter for check up (procedure)")
FOLLOW_UP = ("390906007", "Follow-up encounter (procedure)")
SYMPTOM_VISIT = ("185345009", "Encounter for symptom (procedure)")
EMERGENCY = ("50849002", "Emergency room admission (procedure)")
ADMISSION = ("32485007", "Hospital admission (procedure)")


# --- conditions -------------------------------------------------------------------------------------
HYPERTENSION = "38341003"
DIABETES = "44054006"
PREDIABETES = "15777000"
HYPERLIPIDEMIA = "55822004"
ASTHMA = "195967001"
ATRIAL_FIBRILLATION = "49436004"
CORONARY_HEART_DISEASE = "53741008"
PNEUMONIA = "233604007"


@dataclass(frozen=True)
class Chronic:
    """A long-term condition: who gets it (age bands -> probability), its medications and care plan."""

    code: str
    display: str
    risk: tuple[tuple[int, float], ...]  # (minimum age, probability), the last band that fits applies
    medications: tuple[tuple[str, float], ...] = ()  # (RxNorm code, probability of being prescribed)
    care_plan: str | None = None  # key into CARE_PLANS


CHRONIC = (
    Chronic(
        "38341003",
        "Hypertension",
        ((18, 0.05), (40, 0.25), (60, 0.5)),
        (("314076", 1.0), ("310798", 0.4), ("197361", 0.3)),
        "hypertension",
    ),
    Chronic(
        "44054006",
        "Diabetes mellitus type 2",
        ((30, 0.04), (45, 0.12), (65, 0.2)),
        (("860975", 1.0), ("106892", 0.2)),
        "diabetes",
    ),
    Chronic("15777000", "Prediabetes", ((25, 0.08), (50, 0.15)), (), "lifestyle"),
    Chronic(
        "55822004",
        "Hyperlipidemia",
        ((25, 0.05), (45, 0.2), (65, 0.35)),
        (("312961", 0.5), ("259255", 0.5)),
        "hyperlipidemia",
    ),
    Chronic("195967001", "Asthma", ((3, 0.08),), (("745679", 1.0), ("895994", 0.6)), "asthma"),
    Chronic("49436004", "Atrial fibrillation", ((60, 0.05), (75, 0.1)), (("855332", 0.8),)),
    Chronic(
        "53741008", "Coronary Heart Disease", ((55, 0.06), (70, 0.1)), (("309362", 0.6), ("243670", 0.8))
    ),
    Chronic("40930008", "Hypothyroidism", ((20, 0.04),)),
    Chronic("35489007", "Depressive disorder", ((16, 0.07),)),
    Chronic("239873007", "Osteoarthritis of knee", ((55, 0.15),), (("849574", 0.5),)),
)
# Diagnosed from the body-mass index rather than drawn from a risk table.
OBESITY = Chronic("162864005", "Body mass index 30+ - obesity (finding)", ((18, 0.0),), (), "lifestyle")

# Acute problems: (SNOMED code, display, RxNorm prescribed or None, days until resolved).
ACUTE_AMBULATORY = (
    ("444814009", "Viral sinusitis (disorder)", None, 10),
    ("195662009", "Acute viral pharyngitis (disorder)", "313782", 7),
    ("10509002", "Acute bronchitis (disorder)", "313782", 14),
    ("65363002", "Otitis media", "308182", 10),
    ("40055000", "Chronic sinusitis (disorder)", "308182", 21),
)
ACUTE_EMERGENCY = (
    ("44465007", "Sprain of ankle", "849574", 28),
    ("62106007", "Concussion with no loss of consciousness", "313782", 21),
    ("65966004", "Fracture of forearm", "313782", 56),
    ("233604007", "Pneumonia", "308182", 21),
)


# --- medications (RxNorm) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Medication:
    code: str
    display: str
    dose: str  # the dose unit as written on the label (UCUM annotation)
    frequency: int  # doses per period
    period: int
    period_unit: str
    oral: bool = True
    as_needed: bool = False


MEDICATIONS = {
    m.code: m
    for m in (
        Medication("314076", "lisinopril 10 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication("310798", "Hydrochlorothiazide 25 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication("197361", "amLODIPine 5 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication(
            "860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", "{tbl}", 2, 1, "d"
        ),
        Medication(
            "106892",
            "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension",
            "[IU]",
            2,
            1,
            "d",
            oral=False,
        ),
        Medication("312961", "Simvastatin 20 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication("259255", "atorvastatin 80 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication(
            "745679",
            "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            "{puff}",
            4,
            1,
            "d",
            False,
            True,
        ),
        Medication(
            "895994",
            "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
            "{puff}",
            2,
            1,
            "d",
            oral=False,
        ),
        Medication("855332", "Warfarin Sodium 5 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication("309362", "Clopidogrel 75 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication("243670", "aspirin 81 MG Oral Tablet", "{tbl}", 1, 1, "d"),
        Medication("849574", "Naproxen sodium 220 MG Oral Tablet", "{tbl}", 2, 1, "d", as_needed=True),
        Medication("313782", "Acetaminophen 325 MG Oral Tablet", "{tbl}", 4, 1, "d", as_needed=True),
        Medication("308182", "Amoxicillin 250 MG Oral Capsule", "{cap}", 3, 1, "d"),
    )
}
ORAL_ROUTE = ("26643006", "Oral route")


# --- care plans (SNOMED CT) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Activity:
    """A scheduled care-plan activity: what, which request kind it stands for, and how often."""

    code: tuple[str, str] | None  # (code, display): LOINC when it has a '-' check digit, else SNOMED CT
    text: str
    kind: str  # CarePlan.activity.detail.kind (required binding: ServiceRequest, Task, ...)
    frequency: int
    period: int
    period_unit: str  # "d" or "wk"


@dataclass(frozen=True)
class CarePlanKind:
    category: tuple[str, str]
    title: str
    activities: tuple[Activity, ...]


EXERCISE = Activity(("229065009", "Exercise therapy"), "Exercise therapy", "ServiceRequest", 3, 1, "wk")
HEALTHY_DIET = Activity(("226234005", "Healthy diet"), "Healthy diet review", "ServiceRequest", 1, 4, "wk")

CARE_PLANS = {
    "diabetes": CarePlanKind(
        ("698360004", "Diabetes self management plan"),
        "Diabetes self management",
        (
            Activity(("160670007", "Diabetic diet"), "Diabetic diet", "ServiceRequest", 1, 2, "wk"),
            EXERCISE,
            Activity(("2339-0", "Glucose [Mass/volume] in Blood"), "Check blood glucose", "Task", 2, 1, "d"),
        ),
    ),
    "hypertension": CarePlanKind(
        ("443402002", "Lifestyle education regarding hypertension (procedure)"),
        "Hypertension lifestyle plan",
        (
            Activity(
                ("386463000", "Prescribed activity/exercise education"),
                "Activity and exercise education",
                "ServiceRequest",
                1,
                4,
                "wk",
            ),
            Activity(
                ("1151000175103", "Dietary approaches to stop hypertension diet"),
                "DASH diet",
                "ServiceRequest",
                1,
                2,
                "wk",
            ),
            Activity(
                ("85354-9", "Blood pressure panel with all children optional"),
                "Measure blood pressure at home",
                "Task",
                1,
                1,
                "d",
            ),
        ),
    ),
    "asthma": CarePlanKind(
        ("699728000", "Asthma self management"),
        "Asthma self management",
        (
            Activity(
                ("710081004", "Smoking cessation therapy"),
                "Avoid tobacco smoke",
                "ServiceRequest",
                1,
                4,
                "wk",
            ),
            Activity(None, "Peak flow self-measurement", "Task", 1, 1, "d"),
        ),
    ),
    "hyperlipidemia": CarePlanKind(
        ("736285004", "Hyperlipidemia clinical management plan"),
        "Hyperlipidemia management",
        (HEALTHY_DIET, EXERCISE),
    ),
    "lifestyle": CarePlanKind(
        ("734163000", "Care plan"),
        "Weight and lifestyle plan",
        (HEALTHY_DIET, EXERCISE),
    ),
}


# --- people -------------------------------------------------------------------------------------------
MARITAL = {
    "M": "Married",
    "S": "Never Married",
    "D": "Divorced",
    "W": "Widowed",
}
